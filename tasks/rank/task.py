"""Prefect tasks of the ranking stage: make sure a usable model exists, then score."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tasks.baselines.recommenders import repurchase
from tasks.candidates.generate import CandidateReport, popular_items
from tasks.constants import ITEM_ID, REC_SOURCE
from tasks.features.snapshot import Snapshot
from tasks.progress import stage_task
from tasks.rank import registry
from tasks.rank.kinds import (
    load_scorer,
    recommend_with,
    resolve_kind,
    train_models,
)
from tasks.rank.params import TUNED_FROM_KEY, nightly_carried, with_carried
from tasks.rank.promotion import register_and_gate
from tasks.rank.topk import MODEL_SOURCE, top_k
from tasks.rank.train import NotEnoughHistory
from tasks.safety.faults import kill_if_armed
from tasks.settings import Settings
from tasks.timeutil import known_users
from tasks.validate.features import validate_features
from tasks.validate.run_report import ContractViolation, enforce

log = logging.getLogger("nightrec.rank")
BASELINE_VERSION = "baseline-repurchase"


@dataclass(frozen=True)
class ModelChoice:
    version: str | None  # None: no model could be trained, publish the baseline
    retrained: bool
    reason: str
    # Why the run cannot serve a model of its own (training failed, too little history, the
    # gate refused a first model); None when it can.
    problem: str | None = None


def choose_model(
    settings: Settings, snapshot: Snapshot, retrain: bool | None = None
) -> ModelChoice:
    """Retrain when the newest model before the cutoff is older than the retrain cadence (or
    when asked); a new model of the configured kind serves only if the promotion gate accepts
    it."""
    models_dir = settings.models_dir
    serving = registry.serving_model(models_dir, snapshot.cutoff)
    newest = registry.newest_before(models_dir, snapshot.cutoff)
    age_days = (snapshot.cutoff - newest.cutoff).days if newest else None
    due = newest is None or age_days >= settings.ranker.retrain_every_days
    if retrain is False or (retrain is None and not due):
        if serving is None:
            return ModelChoice(None, False, "no model: baseline", problem="no model trained yet")
        return ModelChoice(serving.version, False, f"newest model is {age_days} day(s) old")
    kind = resolve_kind(settings)
    # The serving champion's tuned parameters (LightGBM's and the network's) carry over to its
    # successors; defaults otherwise.
    carried = nightly_carried(settings, serving.meta if serving else None)
    try:
        trained = train_models(
            [kind],
            snapshot.events(),
            snapshot.catalog(),
            snapshot.cutoff,
            with_carried(settings, carried),
        )[kind]
    except NotEnoughHistory as exc:
        log.warning("not retraining: %s", exc)
        if serving is None:
            return ModelChoice(None, False, f"{exc}: baseline", problem=str(exc))
        return ModelChoice(serving.version, False, f"kept {serving.version}: {exc}")
    except Exception as exc:  # a failing ranker must not stop the night: serve what we have
        log.exception("training the ranker failed")
        failure = f"ranker training failed ({type(exc).__name__}: {_first_line(exc)})"
        if serving is None:
            return ModelChoice(None, False, f"{failure}: baseline", problem=failure)
        # The champion still serves, but tonight's retrain did not happen: say so.
        return ModelChoice(
            serving.version,
            False,
            f"{failure}; kept champion {serving.version}",
            problem=failure,
        )
    if carried:
        assert serving is not None
        trained.meta.update({**carried, TUNED_FROM_KEY: serving.version})
    gate = register_and_gate(models_dir, trained, snapshot.cutoff, settings.ranker.gate_tolerance)
    if gate.same_as_serving:
        return ModelChoice(gate.version, True, "retrained the serving model (same content)")
    if gate.promoted:
        return ModelChoice(gate.version, True, f"promoted: {gate.reason}")
    if gate.champion is None:
        rejected = f"{gate.version} rejected by the gate ({gate.reason})"
        return ModelChoice(None, True, f"{rejected}: baseline", problem=rejected)
    return ModelChoice(
        gate.champion, True, f"{gate.version} rejected ({gate.reason}); kept champion"
    )


@dataclass(frozen=True)
class ScoreOutcome:
    recs_path: Path
    model_version: str  # the model that scored, or BASELINE_VERSION
    model_kind: str | None  # lightgbm | neural | blend; None for the baseline
    fallback: str | None  # why the chosen model was not used, when it was not
    notes: tuple[str, ...] = ()  # candidate sources that served in their bounded form
    features_path: Path | None = None  # a sample of the scored features (drift check)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def allowed_items(catalog: pl.DataFrame, forbidden: list[str]) -> pl.Series:
    """What a run may recommend: catalog items that are not forbidden."""
    items = catalog.get_column(ITEM_ID)
    return items.filter(~items.is_in(pl.Series(forbidden, dtype=pl.Utf8).implode()))


def _baseline(
    settings: Settings,
    events: pl.DataFrame,
    users: pl.Series,
    cutoff: dt.datetime,
    allowed: pl.Series,
) -> pl.DataFrame:
    """Repurchase baseline padded with popular items, both limited to `allowed` items."""
    ranked_popular = popular_items(
        events, cutoff, settings.candidates.popular_days, events.height + 1
    )
    popular = ranked_popular.filter(pl.col(ITEM_ID).is_in(allowed.implode())).head(2 * settings.k)
    baseline = repurchase(events, users, cutoff, settings.k + len(settings.safety.forbidden_items))
    baseline = baseline.filter(pl.col(ITEM_ID).is_in(allowed.implode()))
    return top_k(baseline, users, popular.get_column(ITEM_ID), settings.k).with_columns(
        pl.when(pl.col(REC_SOURCE) == MODEL_SOURCE)
        .then(pl.lit(BASELINE_VERSION))
        .otherwise(pl.col(REC_SOURCE))
        .alias(REC_SOURCE)
    )


def _fallbacks(settings: Settings, snapshot: Snapshot, chosen: str | None) -> list[str]:
    """Models to try, in order: the chosen one, then the champion serving this cutoff."""
    order = [chosen] if chosen else []
    try:
        serving = registry.serving_model(settings.models_dir, snapshot.cutoff)
    except registry.RegistryError:
        serving = None
    if serving is not None and serving.version not in order:
        order.append(serving.version)
    return order


def score_users(
    settings: Settings,
    snapshot: Snapshot,
    choice: ModelChoice,
    work_dir: Path,
    report: Path,
) -> ScoreOutcome:
    """Top-K for every known user as of the cutoff; written to `work_dir/recs.parquet`.

    The feature table is checked against its contract (recorded in `report`) before scoring.
    A model that cannot be loaded or fails to score (a damaged file, a candidate source out of
    memory, anything but bad features) falls back to the champion, then to the repurchase
    baseline; the outcome says which model scored and why it was not the chosen one.
    """
    events, catalog = snapshot.events(), snapshot.catalog()
    users = known_users(events, snapshot.cutoff)
    allowed = allowed_items(catalog, settings.safety.forbidden_items)

    samples: list[pl.DataFrame] = []  # scored features kept for the drift check (monitor)
    keep = settings.monitor.feature_sample_rows

    def check_features(frame: pl.DataFrame) -> None:
        kill_if_armed(settings.safety.fault, "mid_scoring")
        enforce(report, "features", [validate_features(frame)])
        if settings.monitor.enabled:
            samples.append(frame.sample(min(keep, frame.height), seed=settings.seed))

    recs, used, kind, failures = None, BASELINE_VERSION, None, []
    candidates = CandidateReport()
    for version in _fallbacks(settings, snapshot, choice.version):
        samples.clear()  # only the features of the model that scores
        try:
            record = registry.load(settings.models_dir, version)
            scorer = load_scorer(record, settings)
            recs = recommend_with(
                scorer,
                events,
                catalog,
                users,
                snapshot.cutoff,
                settings,
                allowed_items=allowed,
                check_features=check_features,
                report=candidates,
            )
            used, kind = version, record.meta.get("model_kind", "lightgbm")
            break
        except ContractViolation:
            raise  # bad features stop the run; no other model would fix them
        except Exception as exc:  # whatever broke, the customers still get a list
            log.error("model %s cannot score (%s); falling back", version, _first_line(exc))
            failures.append(f"{version} failed ({type(exc).__name__}: {_first_line(exc)})")
    if recs is None:  # the baseline reads no features, so there are none to check
        kill_if_armed(settings.safety.fault, "mid_scoring")
        recs = _baseline(settings, events, users, snapshot.cutoff, allowed)
    path = work_dir / "recs.parquet"
    recs.write_parquet(path)
    reasons = [*failures]
    if choice.version is None and choice.problem:
        reasons.insert(0, choice.problem)
    fallback = f"{'; '.join(reasons)}: scored with {used}" if reasons else None
    notes = tuple(f"candidates: {note}" for note in candidates.notes.values())
    features_path = None
    if samples and recs is not None and used != BASELINE_VERSION:
        sample = pl.concat(samples, how="diagonal_relaxed")
        features_path = work_dir / "features_sample.parquet"
        sample.sample(min(keep, sample.height), seed=settings.seed).write_parquet(features_path)
    return ScoreOutcome(path, used, kind, fallback, notes, features_path)


choose_model_task = stage_task("choose-model", choose_model)
score_task = stage_task("score", score_users)
