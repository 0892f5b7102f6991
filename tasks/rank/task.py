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
    """Use the newest model trained before the cutoff, retraining when it is older than the
    retrain cadence (or when asked); register and promote what was trained."""
    models_dir = settings.models_dir
    current = registry.usable_for(models_dir, snapshot.cutoff)
    age_days = (snapshot.cutoff - current.cutoff).days if current else None
    due = current is None or age_days >= settings.ranker.retrain_every_days
    if retrain is False or (retrain is None and not due):
        if current is None:
            return ModelChoice(None, False, "no model and retraining disabled: baseline")
        return ModelChoice(current.version, False, f"model is {age_days} day(s) old")
    try:
        outcome = train_ranker(snapshot.events(), snapshot.catalog(), snapshot.cutoff, settings)
    except NotEnoughHistory as exc:
        log.warning("not retraining: %s", exc)
        if current is None:
            return ModelChoice(None, False, f"{exc}: baseline")
        return ModelChoice(current.version, False, f"kept {current.version}: {exc}")
    record = registry.register(models_dir, "lgbm", outcome.booster.model_to_string(), outcome.meta)
    champion = registry.champion(models_dir)
    if champion is None or champion.cutoff <= record.cutoff:
        registry.promote(models_dir, record.version)
    return ModelChoice(record.version, True, "retrained")


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
