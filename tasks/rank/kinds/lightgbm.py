"""The LightGBM lambdarank kind: the nightly default on CPU."""

from __future__ import annotations

import lightgbm as lgb

from tasks.rank import registry
from tasks.rank.kinds.base import Scorer, Trained, TrainingContext
from tasks.rank.recommend import BoosterScorer
from tasks.rank.train import TrainOutcome, train_ranker
from tasks.settings import Settings

LightGBMScorer = BoosterScorer  # the kind's scorer is a booster over its features


def lightgbm_fit(ctx: TrainingContext) -> TrainOutcome:
    """The context's LightGBM fit, once for every kind trained with it (lightgbm, blend)."""
    if "lightgbm" not in ctx.shared:
        ctx.shared["lightgbm"] = train_ranker(
            ctx.events, ctx.catalog, ctx.as_of, ctx.settings, ctx.windows
        )
    return ctx.shared["lightgbm"]


class LightGBMKind:
    name = "lightgbm"
    registry_prefix = "lgbm"

    def train(self, ctx: TrainingContext) -> Trained:
        outcome = lightgbm_fit(ctx)
        return Trained(
            self.name,
            LightGBMScorer(outcome.booster, ctx.features),
            {**outcome.meta, "model_kind": self.name, "feature_profile": ctx.feature_profile()},
            outcome.booster.model_to_string(),
        )

    def load(self, record: registry.ModelRecord, settings: Settings) -> Scorer:
        booster = lgb.Booster(model_file=str(record.model_file))
        return LightGBMScorer(booster, record.meta["features"])
