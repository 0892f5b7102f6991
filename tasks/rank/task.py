"""Prefect tasks of the ranking stage: make sure a usable model exists, then score."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import polars as pl
from prefect import task

from tasks.baselines.recommenders import repurchase
from tasks.candidates.generate import popular_items
from tasks.constants import ITEM_ID, REC_SOURCE
from tasks.features.snapshot import Snapshot
from tasks.rank import registry
from tasks.rank.dataset import known_users
from tasks.rank.gate import promotion_gate
from tasks.rank.params import TUNED_FROM_KEY, TUNED_PARAMS_KEY, tuned_params, with_ranker_params
from tasks.rank.topk import MODEL_SOURCE, top_k
from tasks.rank.train import NotEnoughHistory, recommend, train_ranker
from tasks.settings import Settings

log = logging.getLogger("nightrec.rank")
BASELINE_VERSION = "baseline-repurchase"


@dataclass(frozen=True)
class ModelChoice:
    version: str | None  # None: no model could be trained, publish the baseline
    retrained: bool
    reason: str


def choose_model(
    settings: Settings, snapshot: Snapshot, retrain: bool | None = None
) -> ModelChoice:
    """Retrain when the newest model before the cutoff is older than the retrain cadence (or
    when asked); a new model serves only if the promotion gate accepts it."""
    models_dir = settings.models_dir
    serving = registry.serving_model(models_dir, snapshot.cutoff)
    newest = registry.newest_before(models_dir, snapshot.cutoff)
    age_days = (snapshot.cutoff - newest.cutoff).days if newest else None
    due = newest is None or age_days >= settings.ranker.retrain_every_days
    if retrain is False or (retrain is None and not due):
        if serving is None:
            return ModelChoice(None, False, "no model: baseline")
        return ModelChoice(serving.version, False, f"newest model is {age_days} day(s) old")
    # The serving champion's tuned parameters carry over to its successors (defaults otherwise).
    tuned = tuned_params(serving.meta if serving else None)
    if not settings.tune.nightly_uses_champion_params:
        tuned = None
    try:
        outcome = train_ranker(
            snapshot.events(),
            snapshot.catalog(),
            snapshot.cutoff,
            with_ranker_params(settings, tuned),
        )
    except NotEnoughHistory as exc:
        log.warning("not retraining: %s", exc)
        if serving is None:
            return ModelChoice(None, False, f"{exc}: baseline")
        return ModelChoice(serving.version, False, f"kept {serving.version}: {exc}")
    if tuned:
        outcome.meta.update({TUNED_PARAMS_KEY: tuned, TUNED_FROM_KEY: serving.version})
    record = registry.register(models_dir, "lgbm", outcome.booster.model_to_string(), outcome.meta)
    if serving is not None and serving.version == record.version:
        return ModelChoice(record.version, True, "retrained the serving model (same content)")
    decision = promotion_gate(
        record.meta, serving.meta if serving else None, settings.ranker.gate_tolerance
    )
    log.info("gate for %s: %s", record.version, decision.reason)
    if decision.promote:
        registry.promote(models_dir, record.version)
        return ModelChoice(record.version, True, f"promoted: {decision.reason}")
    if serving is None:
        return ModelChoice(None, True, f"{record.version} rejected ({decision.reason}): baseline")
    return ModelChoice(
        serving.version, True, f"{record.version} rejected ({decision.reason}); kept champion"
    )


def score_users(
    settings: Settings, snapshot: Snapshot, model_version: str | None, work_dir: Path
) -> Path:
    """Top-K for every known user as of the cutoff; written to `work_dir/recs.parquet`."""
    events, catalog = snapshot.events(), snapshot.catalog()
    users = known_users(events, snapshot.cutoff)
    if model_version is None:
        popular = popular_items(
            events, snapshot.cutoff, settings.candidates.popular_days, 2 * settings.k
        )
        baseline = repurchase(events, users, snapshot.cutoff, settings.k)
        recs = top_k(baseline, users, popular.get_column(ITEM_ID), settings.k).with_columns(
            pl.when(pl.col(REC_SOURCE) == MODEL_SOURCE)
            .then(pl.lit(BASELINE_VERSION))
            .otherwise(pl.col(REC_SOURCE))
            .alias(REC_SOURCE)
        )
    else:
        record = registry.load(settings.models_dir, model_version)
        booster = lgb.Booster(model_file=str(record.model_file))
        recs = recommend(
            booster, events, catalog, users, snapshot.cutoff, settings, record.meta["features"]
        )
    path = work_dir / "recs.parquet"
    recs.write_parquet(path)
    return path


choose_model_task = task(name="choose-model")(choose_model)
score_task = task(name="score")(score_users)
