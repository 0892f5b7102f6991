"""Run health at the task edge: gather what the checks of tasks/monitor/checks.py read (the
snapshot, the scored lists, earlier partitions, the registry, the store), judge them against
settings.monitor.checks, store one row per check in `run_health`, and stop a run whose check
failed before its partition is swapped in.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from prefect import task

from tasks.baselines.recommenders import repurchase
from tasks.constants import EVENT_TYPE, ITEM_ID, QUANTITY, RANK, REC_SOURCE, SCORE, TS, USER_ID
from tasks.errors import HealthCheckFailed
from tasks.features.snapshot import Snapshot
from tasks.monitor import checks as c
from tasks.progress import stage_task
from tasks.protocol.split import evaluated_users
from tasks.rank import registry
from tasks.rank.task import ModelChoice, ScoreOutcome
from tasks.settings import Settings
from tasks.store import connect, sql_text
from tasks.timeutil import events_before, run_as_of, start_of

log = logging.getLogger("nightrec.monitor")


# What the checks read of a list: the explanations' text is most of a published file's bytes
# (107 of 188 MiB at 97k customers) and no check reads it.
LIST_COLUMNS = (USER_ID, ITEM_ID, RANK, SCORE, REC_SOURCE)
# What the rolling NDCG, its repurchase baseline and novelty read of the purchases.
PURCHASE_COLUMNS = (USER_ID, ITEM_ID, EVENT_TYPE, TS, QUANTITY)


def read_partition(root: Path, run_date: dt.date) -> pl.DataFrame | None:
    """The lists published for `run_date` (every part file; LIST_COLUMNS only), None when
    there are none."""
    folder = root / f"run_date={run_date.isoformat()}"
    if not any(folder.glob("*.parquet")):
        return None
    return pl.read_parquet(folder / "*.parquet", columns=list(LIST_COLUMNS))


def read_history(db_path: Path, since: dt.date, before: dt.date) -> pl.DataFrame:
    """Stored checks of the run dates in [since, before), oldest first (none in a store that
    no run with the monitor has written to yet)."""
    with connect(db_path, read_only=True) as con:
        try:
            table = con.execute(sql_text("run_health_history"), {"since": since, "before": before})
        # A store created before run_health existed (DuckDB then looks for a Python object of
        # that name, and finds this module's function).
        except (duckdb.CatalogException, duckdb.InvalidInputException):
            return pl.DataFrame(schema={"run_date": pl.Date, "check_name": pl.Utf8})
        return pl.from_arrow(table.to_arrow_table())


def _history(settings: Settings, run_date: dt.date, runs: int) -> pl.DataFrame:
    """The checks of the last `runs` run dates before `run_date`."""
    since = run_date - dt.timedelta(days=4 * runs)
    history = read_history(settings.db_path, since, run_date)
    dates = history.get_column("run_date").unique().sort().tail(runs)
    return history.filter(pl.col("run_date").is_in(dates.implode()))


def _judged(settings: Settings, found: list[c.Check]) -> list[c.Check]:
    return [c.judge(check, settings.monitor.checks) for check in found]


@dataclass(frozen=True)
class ModelHealth:
    """The model checks made before the model is chosen, and what they took."""

    checks: list[c.Check]
    seconds: float = 0.0


def model_checks(settings: Settings, snapshot: Snapshot, run_date: dt.date) -> ModelHealth:
    """Before the model is chosen: the serving model's age, and how the lists published
    `rolling_days` ago did on the days that arrived since (the protocol's metric)."""
    if not settings.monitor.enabled:
        return ModelHealth([])
    started = time.perf_counter()
    serving = registry.serving_model(settings.models_dir, snapshot.as_of)
    age = (snapshot.as_of - serving.as_of).days if serving else None
    cadence = settings.ranker.retrain_every_days
    found = [c.model_age(age, cadence, serving.version if serving else None)]

    days = settings.monitor.rolling_days
    then = run_date - dt.timedelta(days=days)
    published = read_partition(settings.recommendations_dir, then)
    baseline = None
    as_of = run_as_of(then)
    # The protocol and the baseline read these columns of the purchases alone.
    events = snapshot.purchases(PURCHASE_COLUMNS)
    users = evaluated_users(events, as_of, days)
    if published is not None and users.len():
        baseline = repurchase(events_before(events, as_of), users, as_of, settings.k)
    found.append(c.rolling_ndcg(published, events, baseline, as_of, days, settings.k, users))
    return ModelHealth(_judged(settings, found), time.perf_counter() - started)


def alarms(found: list[c.Check]) -> list[c.Check]:
    return [check for check in found if check.status in ("warn", "fail")]


def retrain_decision(
    settings: Settings, early: ModelHealth, asked: bool | None
) -> tuple[bool | None, list[str]]:
    """Tonight's retrain flag and its note: a model check off ok forces a retrain when
    settings.monitor.retrain_on_alarm is set and the run did not decide for itself."""
    raised = alarms(early.checks)
    if not raised or asked is not None:
        return asked, []
    why = "; ".join(check.line() for check in raised)
    if not settings.monitor.retrain_on_alarm:
        return asked, [f"model health: {why} (monitor.retrain_on_alarm is off)"]
    return True, [f"retrain forced by the model health: {why}"]


def _day_totals(db_path: Path, day: dt.date) -> tuple[int | None, int | None]:
    with connect(db_path, read_only=True) as con:
        row = con.execute(sql_text("ingestions_day_totals"), {"event_day": day}).fetchone()
    return (row[0], row[1]) if row else (None, None)


def input_checks(
    settings: Settings, events: pl.LazyFrame, run_date: dt.date, model: str | None
) -> list[c.Check]:
    """The day's events (a scan of the run's snapshot) against earlier days and the serving
    model's training window; only the day, counts and ids are read into memory."""
    monitor = settings.monitor
    day = c.day_events(events, run_date).collect()
    start = start_of(run_date)
    ref_end = start
    if model is not None:
        ref_end = min(ref_end, registry.load(settings.models_dir, model).as_of)
    ref_start = ref_end - dt.timedelta(days=monitor.reference_days)
    reference = (
        events.filter((pl.col(TS) >= ref_start) & (pl.col(TS) < ref_end))
        .select(c.DRIFT_COLUMNS)
        .collect()
    )
    window = f"{ref_start:%Y-%m-%d}..{ref_end - dt.timedelta(days=1):%Y-%m-%d}"
    rows_in, rows_quarantined = _day_totals(settings.db_path, run_date)
    return [
        c.volume(events, run_date, monitor.weekday_weeks, monitor.min_rows),
        c.duplicates(day),
        c.newcomers(events, day, start, USER_ID),
        c.newcomers(events, day, start, "item_id"),
        c.quarantine(rows_in, rows_quarantined),
        c.input_drift(reference, day, monitor.drift_bins, monitor.min_rows, window),
    ]


def output_checks(
    settings: Settings,
    snapshot: Snapshot,
    scored: ScoreOutcome,
    run_date: dt.date,
    history: pl.DataFrame,
    purchases: pl.DataFrame,
) -> list[c.Check]:
    """The scored top-K (before the swap) against earlier runs and the model's training
    (`purchases`: the snapshot's, which novelty reads)."""
    recs = pl.read_parquet(scored.recs_path, columns=list(LIST_COLUMNS))
    catalog = snapshot.catalog()
    past = events_before(purchases, snapshot.as_of)
    earlier = {
        name: history.filter(pl.col("check_name") == name).get_column("value").to_list()
        for name in c.RELATIVE
    }
    allowed = catalog.height - len(settings.safety.forbidden_items)
    yesterday = read_partition(settings.recommendations_dir, run_date - dt.timedelta(days=1))
    found = [
        c.fallback(recs, REC_SOURCE),
        c.score_ties(recs, REC_SOURCE, SCORE),
        *c.list_quality(recs, catalog, past, max(allowed, 1), settings.k, earlier),
        c.overlap(recs, yesterday, settings.k),
    ]
    try:
        meta = registry.load(settings.models_dir, scored.model_version).meta
    except registry.RegistryError:
        meta = None  # the baseline served: no model to profile or validate
    sample = pl.read_parquet(scored.features_path) if scored.features_path else None
    profiles = meta.get("feature_profile") if meta else None
    monitor = settings.monitor
    found.append(c.feature_drift(profiles, sample, monitor.min_rows, monitor.feature_psi))
    validation = meta.get("validation") if meta else None
    found.append(c.model_validation(scored.model_version, validation, settings.k))
    return found


def store_checks(
    db_path: Path, run_date: dt.date, run_id: str, model_version: str, found: list[c.Check]
) -> None:
    """Replace the date's rows in `run_health` by these, in one transaction."""
    staged = pl.DataFrame(
        [{**check.as_dict(), "run_date": run_date, "run_id": run_id} for check in found],
        schema_overrides={
            name: pl.Float64 for name in ("value", "reference", "measure", "warn", "fail")
        },
    ).with_columns(pl.lit(model_version, dtype=pl.Utf8).alias("model_version"))
    with connect(db_path) as con:
        con.register("staged_health", staged.to_arrow())
        con.execute("begin transaction")
        try:
            con.execute(sql_text("run_health_clear_run"), {"run_date": run_date})
            con.execute(sql_text("run_health"))
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        finally:
            con.unregister("staged_health")


def summary(found: list[c.Check], seconds: float) -> dict[str, Any]:
    """What the manifest and the report say of the run's health."""
    failed = [check.line() for check in found if check.status == "fail"]
    warned = [check.line() for check in found if check.status == "warn"]
    return {
        "status": "fail" if failed else "warn" if warned else "ok",
        "failed": failed,
        "warnings": warned,
        "skipped": [check.line() for check in found if check.status == "skip"],
        "checks": {
            check.name: {
                "status": check.status,
                "measure": check.measure,
                "value": check.value,
                "reference": check.reference,
                "warn": check.warn,
                "fail": check.fail,
                "detail": check.detail,
            }
            for check in found
        },
        "seconds": round(seconds, 3),
    }


def run_health(
    settings: Settings,
    snapshot: Snapshot,
    run_date: dt.date,
    run_id: str,
    choice: ModelChoice,
    scored: ScoreOutcome,
    early: ModelHealth,
) -> dict[str, Any] | None:
    """Judge, store and enforce the run's checks (with `early`, the model checks made before
    the model was chosen). A failed check raises HealthCheckFailed before anything is
    published; warnings return in the summary, which the manifest and report carry."""
    if not settings.monitor.enabled:
        return None
    started = time.perf_counter()
    history = _history(settings, run_date, settings.monitor.history_runs)
    inputs = input_checks(settings, snapshot.scan_events(), run_date, choice.version)
    purchases = snapshot.purchases(PURCHASE_COLUMNS)
    outputs = output_checks(settings, snapshot, scored, run_date, history, purchases)
    found = [*early.checks, *_judged(settings, inputs), *_judged(settings, outputs)]
    store_checks(settings.db_path, run_date, run_id, scored.model_version, found)
    result = summary(found, early.seconds + time.perf_counter() - started)
    for line in result["warnings"]:
        log.warning("health warning: %s", line)
    if result["failed"]:
        raise HealthCheckFailed(
            f"{run_date} not published: health check failed: {'; '.join(result['failed'])}",
            result,
        )
    return result


model_checks_task = stage_task("model-checks", model_checks)
health_task = stage_task("health", run_health)
retrain_decision_task = task(name="retrain-decision")(retrain_decision)
