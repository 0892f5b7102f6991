"""The blend kind: LightGBM and the network together, per-customer z-scores weighted by the
weight with the best NDCG@10 on the validation window (scored by models that never trained
on it)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl

from tasks.constants import USER_ID
from tasks.rank import lgbm, registry
from tasks.rank.dataset import LABEL
from tasks.rank.kinds.base import LIST_KEY, Scorer, Trained, TrainingContext, with_list_key
from tasks.rank.kinds.lightgbm import LightGBMScorer, lightgbm_fit
from tasks.rank.kinds.neural import (
    NETWORK_FILE,
    load_network,
    network_bytes,
    network_fit,
    network_scorers,
    network_text,
)
from tasks.rank.neural import blend as blending
from tasks.settings import Settings

log = logging.getLogger("nightrec.rank")
BOOSTER_FILE = "booster.txt"


@dataclass(frozen=True)
class BlendScorer:
    lightgbm: Scorer
    neural: Scorer
    weight: float  # on LightGBM's per-customer z-score

    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        return blending.blend(
            frame.get_column(USER_ID),
            self.lightgbm.score(frame, events, as_of),
            self.neural.score(frame, events, as_of),
            self.weight,
        )


class BlendKind:
    name = "blend"
    registry_prefix = "blend"

    def train(self, ctx: TrainingContext) -> Trained:
        booster_fit = lightgbm_fit(ctx)
        fitted = network_fit(ctx)
        assert booster_fit.early_booster is not None
        features = ctx.features
        nn_early, nn_final = network_scorers(ctx, fitted)
        valid = with_list_key(ctx.frames[:1])
        weight, tried = blending.choose_weight(
            valid.get_column(LIST_KEY),
            lgbm.predict(booster_fit.early_booster, valid, features),
            fitted.valid_scores,
            valid.get_column(LABEL).to_numpy(),
            ctx.settings.neural.blend_grid,
        )
        log.info("blend weight on LightGBM %.2f (validation NDCG@10 by weight %s)", weight, tried)
        early = BlendScorer(LightGBMScorer(booster_fit.early_booster, features), nn_early, weight)
        meta = booster_fit.meta
        return Trained(
            self.name,
            BlendScorer(LightGBMScorer(booster_fit.booster, features), nn_final, weight),
            {
                **ctx.base_meta(),
                "neural": fitted.meta,
                "model_kind": self.name,
                "train_rows": meta["train_rows"],
                "best_iteration": meta["best_iteration"],
                "blend_weight_lightgbm": weight,
                "blend_valid_ndcg10_by_weight": {f"{w:.2f}": v for w, v in tried.items()},
                "lightgbm": {
                    k: meta[k] for k in ("params", "best_iteration", "feature_importance")
                },
                "validation": ctx.validate(self.name, early),
            },
            network_text(fitted.prep, fitted.arch),
            {
                NETWORK_FILE: network_bytes(fitted.final),
                BOOSTER_FILE: booster_fit.booster.model_to_string().encode(),
            },
        )

    def load(self, record: registry.ModelRecord, settings: Settings) -> Scorer:
        booster = lgb.Booster(model_file=str(record.path / BOOSTER_FILE))
        return BlendScorer(
            LightGBMScorer(booster, record.meta["features"]),
            load_network(record, settings),
            record.meta["blend_weight_lightgbm"],
        )
