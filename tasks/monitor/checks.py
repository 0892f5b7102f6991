"""The run's health checks as pure functions over frames: each returns a `Check` whose
`measure` the check's thresholds (settings.monitor.checks.<name>) judge.

Three families, by when they can run:
- model checks, before the model is chosen (so an alarm can force a retrain): `model_age`,
  `rolling_ndcg`;
- input checks, on the run's snapshot: `volume`, `duplicates`, `new_customers`,
  `new_items`, `quarantine`, `input_drift`;
- output checks, on the scored top-K before the partition swap: `fallback`, `score_ties`,
  `coverage`, `diversity`, `novelty`, `overlap`, `feature_drift`, `model_validation`.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import polars as pl

from tasks.constants import EVENT_COLUMNS, EVENT_TYPE, ITEM_ID, PRICE, QUANTITY, TS, USER_ID
from tasks.protocol.drift import categorical_psi, psi, psi_against
from tasks.protocol.metrics import diversity, items_covered, novelty, ranking_metrics
from tasks.protocol.split import evaluated_users, truth_window
from tasks.rank.topk import MODEL_SOURCE
from tasks.settings import FoldBound, LowerBound, MonitorChecks, UpperBound
from tasks.timeutil import start_of

Status = Literal["ok", "warn", "fail", "skip"]
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)
Direction = Literal["above", "below", "fold"]

# What each measure is, and which way it alarms; the README's table is this one.
CHECKS: dict[str, tuple[Direction, str]] = {
    "model_age": ("above", "serving model's age / ranker.retrain_every_days"),
    "rolling_ndcg": ("below", "NDCG@K of lists published rolling_days ago / repurchase's"),
    "volume": ("fold", "day's events / median of the same weekday in earlier weeks"),
    "duplicates": ("above", "share of the day's events repeating another in full"),
    "new_customers": ("above", "share of the day's customers never seen before"),
    "new_items": ("above", "share of the day's items never seen before"),
    "quarantine": ("above", "share of the day's landing rows quarantined"),
    "input_drift": ("above", "max PSI of price, quantity, event mix vs the model's window"),
    "fallback": ("above", "share of customers with no list from the model"),
    "score_ties": ("above", "share of customers whose model scores are all equal"),
    "coverage": ("below", "catalog coverage / median of earlier runs"),
    "diversity": ("below", "intra-list category diversity / median of earlier runs"),
    "novelty": ("below", "mean self-information / median of earlier runs"),
    "overlap": ("below", "mean share of each list also in yesterday's"),
    "feature_drift": ("above", "share of model features with PSI > feature_psi vs training"),
    "model_validation": ("below", "serving model's validation NDCG@K (trend only)"),
}
# Checks whose measure is the value over the median of the same check in earlier runs.
RELATIVE = ("coverage", "diversity", "novelty")


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None  # the quantity itself (events, share, PSI, ...)
    reference: float | None  # what it is compared with, when anything
    measure: float | None  # what the thresholds judge; None: the check could not run
    detail: str = ""
    status: Status = "ok"
    # Without a measure the check is skip, unless it knows better: a day without events
    # warns (a closed shop, or a feed that missed a day) rather than passing unseen.
    unmeasured: Status = "skip"
    warn: float | None = None
    fail: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """'volume 0.48 (warn 1.75, fail 4): 61 events vs 127 ...' for logs and errors."""
        shown = "-" if self.measure is None else f"{self.measure:.3g}"
        levels = ", ".join(
            f"{name} {level:g}"
            for name, level in (("warn", self.warn), ("fail", self.fail))
            if level is not None
        )
        return f"{self.name} {shown}" + (f" ({levels})" if levels else "") + f": {self.detail}"


def _alarm(measure: float, level: float | None, direction: Direction) -> bool:
    if level is None:
        return False
    if direction == "above":
        return measure > level
    if direction == "below":
        return measure < level
    return measure > level or measure < 1.0 / level


def judge(check: Check, bounds: MonitorChecks) -> Check:
    """The check with its thresholds and status: fail beats warn; no measure is skip."""
    bound: UpperBound | LowerBound | FoldBound = getattr(bounds, check.name)
    direction = CHECKS[check.name][0]
    if check.measure is None or not math.isfinite(check.measure):
        status: Status = check.unmeasured if bound.warn is not None else "skip"
    elif _alarm(check.measure, bound.fail, direction):
        status = "fail"
    elif _alarm(check.measure, bound.warn, direction):
        status = "warn"
    else:
        status = "ok"
    return Check(**{**check.as_dict(), "status": status, "warn": bound.warn, "fail": bound.fail})


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or not reference > 0:
        return None
    return value / reference


# ---------------------------------------------------------------- model checks


def model_age(age_days: int | None, cadence_days: int, version: str | None) -> Check:
    if age_days is None:
        return Check("model_age", None, cadence_days, None, "no model serves yet")
    detail = f"{version} is {age_days} day(s) old; retrain cadence {cadence_days} day(s)"
    return Check("model_age", age_days, cadence_days, age_days / cadence_days, detail)


def rolling_ndcg(
    published: pl.DataFrame | None,
    events: pl.DataFrame,
    baseline: pl.DataFrame | None,
    as_of: dt.datetime,
    days: int,
    k: int,
    users: pl.Series | None = None,
) -> Check:
    """The protocol (truth = purchases in [as_of, as_of + days)) applied to the lists a run
    published at `as_of`, against the repurchase baseline on the same customers."""
    if published is None:
        return Check("rolling_ndcg", None, None, None, f"no lists published for {as_of:%Y-%m-%d}")
    users = evaluated_users(events, as_of, days) if users is None else users
    if users.len() == 0:
        return Check("rolling_ndcg", None, None, None, f"no customer bought in the {days} days")
    truth = truth_window(events, as_of, days)
    ours = ranking_metrics(published, truth, users, k)[f"ndcg@{k}"]
    theirs = ranking_metrics(baseline, truth, users, k)[f"ndcg@{k}"] if baseline is not None else 0
    detail = (
        f"lists of {as_of - dt.timedelta(days=1):%Y-%m-%d} over the {days} days since: "
        f"NDCG@{k} {ours:.4f} vs repurchase {theirs:.4f}, {users.len():,} customers"
    )
    return Check("rolling_ndcg", ours, theirs, _ratio(ours, theirs), detail)


# ---------------------------------------------------------------- input checks


def day_events(events: Frame, day: dt.date) -> Frame:
    start = start_of(day)
    return events.filter((pl.col(TS) >= start) & (pl.col(TS) < start + dt.timedelta(days=1)))


def volume(
    events: pl.DataFrame | pl.LazyFrame, day: dt.date, weeks: int, min_rows: int = 1
) -> Check:
    """The day's events against the median of the same weekday over `weeks` earlier weeks
    (weeks before the first event are left out; a closed day counts as 0). A median below
    `min_rows` is too small a count to judge a ratio by (a dozen events swing by half)."""
    per_day = dict(
        events.lazy()
        .group_by(pl.col(TS).dt.date().alias("d"))
        .len()
        .collect(engine="streaming")
        .iter_rows()
    )  # {date: count}
    today = per_day.get(day, 0)
    first = min(per_day) if per_day else day
    earlier = [day - dt.timedelta(weeks=w) for w in range(1, weeks + 1)]
    counts = [per_day.get(d, 0) for d in earlier if d >= first]
    if not counts:
        return Check("volume", today, None, None, f"{today:,} events; no earlier {day:%A}")
    median = float(statistics.median(counts))
    detail = f"{today:,} events vs median {median:,.0f} of {len(counts)} earlier {day:%A}(s)"
    if median == 0:
        return Check("volume", today, median, None, detail + " (none expected)")
    if median < min_rows:
        return Check("volume", today, median, None, f"{detail}: fewer than {min_rows}")
    if today == 0:  # no ratio to judge; a feed that stopped for good fails the input-age check
        detail += ": none on the day (a closed day, or a feed that missed it)"
        return Check("volume", today, median, None, detail, unmeasured="warn")
    return Check("volume", today, median, today / median, detail)


def duplicates(day: pl.DataFrame) -> Check:
    if day.height == 0:
        return Check("duplicates", None, None, None, "no events on the day")
    columns = [c for c in EVENT_COLUMNS if c in day.columns]
    repeated = day.height - day.select(columns).unique().height
    share = repeated / day.height
    return Check("duplicates", share, None, share, f"{repeated:,} of {day.height:,} events")


def newcomers(
    events: pl.DataFrame | pl.LazyFrame, day: pl.DataFrame, start: dt.datetime, column: str
) -> Check:
    name = "new_customers" if column == USER_ID else "new_items"
    seen_today = day.select(column).unique()
    if seen_today.height == 0:
        return Check(name, None, None, None, "no events on the day")
    # streaming: the scan's ids are read a batch at a time, only the distinct ones are kept
    before = (
        events.lazy().filter(pl.col(TS) < start).select(column).unique().collect(engine="streaming")
    )
    new = seen_today.join(before, on=column, how="anti").height
    share = new / seen_today.height
    return Check(name, share, None, share, f"{new:,} of {seen_today.height:,}")


def quarantine(rows_in: int | None, rows_quarantined: int | None) -> Check:
    if not rows_in:
        return Check("quarantine", None, None, None, "no landing file ingested for the day")
    share = (rows_quarantined or 0) / rows_in
    detail = f"{rows_quarantined or 0:,} of {rows_in:,} landing rows"
    return Check("quarantine", share, None, share, detail)


def _log_values(frame: pl.DataFrame, column: str) -> np.ndarray:
    values = frame.get_column(column).drop_nulls().cast(pl.Float64).to_numpy()
    return np.log1p(np.clip(values, 0.0, None))


# What input_drift reads of the events.
DRIFT_COLUMNS = (PRICE, QUANTITY, EVENT_TYPE)


def input_drift(
    reference: pl.DataFrame, day: pl.DataFrame, bins: int, min_rows: int, window: str
) -> Check:
    """Max PSI of the day's price and quantity (log scale) and event-type mix against the
    reference window's events."""
    if day.height < min_rows or reference.height < min_rows:
        detail = f"{day.height:,} events on the day, {reference.height:,} in {window}"
        return Check("input_drift", None, None, None, f"{detail}: fewer than {min_rows}")
    parts: dict[str, float] = {}
    for column in (PRICE, QUANTITY):
        ref, act = _log_values(reference, column), _log_values(day, column)
        if ref.size >= min_rows and act.size >= min_rows:
            parts[column] = psi(ref, act, bins)

    def mix(frame: pl.DataFrame) -> dict[str, int]:
        return dict(frame.get_column(EVENT_TYPE).value_counts().iter_rows())

    parts[EVENT_TYPE] = categorical_psi(mix(reference), mix(day))
    worst = max(parts, key=parts.__getitem__)
    detail = f"vs {window}: " + ", ".join(f"{c} {v:.3f}" for c, v in parts.items())
    return Check("input_drift", parts[worst], None, parts[worst], detail)


# ---------------------------------------------------------------- output checks


def fallback(recs: pl.DataFrame, source: str) -> Check:
    users = recs.get_column(USER_ID).n_unique()
    if users == 0:
        return Check("fallback", None, None, None, "no lists")
    served = recs.filter(pl.col(source) == MODEL_SOURCE).get_column(USER_ID).n_unique()
    share = (users - served) / users
    return Check("fallback", share, None, share, f"{users - served:,} of {users:,} customers")


def score_ties(recs: pl.DataFrame, source: str, score: str) -> Check:
    model = recs.filter(pl.col(source) == MODEL_SOURCE)
    per_user = (
        model.group_by(USER_ID)
        .agg(pl.len().alias("n"), pl.col(score).n_unique().alias("distinct"))
        .filter(pl.col("n") >= 2)
    )
    if per_user.height == 0:
        return Check("score_ties", None, None, None, "no customer with two model-scored items")
    tied = per_user.filter(pl.col("distinct") == 1).height
    share = tied / per_user.height
    q = model.get_column(score).quantile
    spread = f"scores p10 {q(0.1):.4g}, p50 {q(0.5):.4g}, p90 {q(0.9):.4g}"
    return Check("score_ties", share, None, share, f"{tied:,} of {per_user.height:,}; {spread}")


def relative(name: str, value: float | None, history: list[float], detail: str) -> Check:
    """A value against the median of the same check's values in earlier runs."""
    earlier = [v for v in history if v is not None and math.isfinite(v)]
    if value is None or not math.isfinite(value):
        return Check(name, None, None, None, detail)
    if not earlier:
        return Check(name, value, None, None, f"{detail}; no earlier run to compare")
    median = float(statistics.median(earlier))
    detail = f"{detail} vs median {median:.4g} of {len(earlier)} earlier run(s)"
    return Check(name, value, median, _ratio(value, median), detail)


def list_quality(
    recs: pl.DataFrame,
    catalog: pl.DataFrame,
    past: pl.DataFrame,
    catalog_size: int,
    k: int,
    history: dict[str, list[float]],
) -> list[Check]:
    covered = items_covered(recs, k)
    share = covered / catalog_size if catalog_size else None
    return [
        relative("coverage", share, history.get("coverage", []), f"{covered:,} items"),
        relative("diversity", diversity(recs, catalog, k), history.get("diversity", []), "ILD"),
        relative("novelty", novelty(recs, past, k), history.get("novelty", []), "bits"),
    ]


def overlap(recs: pl.DataFrame, yesterday: pl.DataFrame | None, k: int) -> Check:
    """Mean over customers in both of |today's list & yesterday's| / |today's list|."""
    if yesterday is None:
        return Check("overlap", None, None, None, "no lists published the day before")
    today = recs.filter(pl.col("rank") <= k).select(USER_ID, ITEM_ID)
    before = yesterday.filter(pl.col("rank") <= k).select(USER_ID, ITEM_ID)
    common = today.join(before.select(USER_ID).unique(), on=USER_ID, how="semi")
    if common.height == 0:
        return Check("overlap", None, None, None, "no customer in both days' lists")
    kept = common.join(before, on=[USER_ID, ITEM_ID], how="semi").group_by(USER_ID).len()
    per_user = (
        common.group_by(USER_ID)
        .len()
        .join(kept, on=USER_ID, how="left", suffix="_kept")
        .select((pl.col("len_kept").fill_null(0) / pl.col("len")).mean())
        .item()
    )
    users = common.get_column(USER_ID).n_unique()
    return Check("overlap", per_user, None, per_user, f"{users:,} customers in both days")


def feature_drift(
    profiles: dict[str, Any] | None, sample: pl.DataFrame | None, min_rows: int, drifted: float
) -> Check:
    """Share of the model's features whose PSI against its training windows exceeds
    `drifted` (a data-set drift in the manner of Evidently's share of drifted columns: a
    few features that grow with the calendar, such as days since a first sale, always move;
    most features moving at once is a shift)."""
    if not profiles:
        return Check("feature_drift", None, None, None, "the model has no feature profile")
    if sample is None or sample.height < min_rows:
        rows = 0 if sample is None else sample.height
        return Check("feature_drift", None, None, None, f"{rows} scored rows (< {min_rows})")
    drift = {
        name: psi_against(prof, sample.get_column(name).cast(pl.Float64).to_numpy())
        for name, prof in profiles.items()
        if name in sample.columns
    }
    if not drift:
        return Check("feature_drift", None, None, None, "no profiled feature was scored")
    moved = sum(value > drifted for value in drift.values())
    share = moved / len(drift)
    top = sorted(drift, key=drift.__getitem__, reverse=True)[:3]
    detail = f"{moved} of {len(drift)} features with PSI > {drifted:g}; largest " + ", ".join(
        f"{n} {drift[n]:.3f}" for n in top
    )
    return Check("feature_drift", share, None, share, detail)


def model_validation(version: str, validation: dict[str, Any] | None, k: int) -> Check:
    if not validation:
        return Check("model_validation", None, None, None, f"{version} has no validation")
    key = validation.get("model_key", "lightgbm")
    value = validation.get("metrics", {}).get(key, {}).get(f"ndcg@{k}")
    if value is None:
        return Check("model_validation", None, None, None, f"{version}: no ndcg@{k}")
    detail = f"{version} ({key}) at as-of {str(validation.get('as_of', ''))[:10]}"
    return Check("model_validation", value, None, value, detail)
