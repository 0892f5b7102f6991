"""The protocol backtest behind `nightrec evaluate`: at an as-of date T, train the nightly
ranker on events before T exactly as the run for T - 1 day would, and compare it with every
baseline on the same customers, with a bootstrap interval on the difference."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tasks.baselines.recommenders import ease, item_knn, popularity, repurchase
from tasks.constants import EVAL_KS, TS
from tasks.evaluate.metrics import evaluate_all, paired_bootstrap, per_user_metrics
from tasks.evaluate.protocol import evaluated_users, truth_window
from tasks.rank.gate import MODEL_KEY
from tasks.rank.kinds import KINDS, recommend_with, train_models
from tasks.settings import Settings

BASELINES = {
    "popularity": popularity,
    "repurchase": repurchase,
    "item-kNN": item_knn,
    "EASE": ease,
}


@dataclass(frozen=True)
class Backtest:
    as_of: dt.datetime
    horizon_days: int
    users: int
    metrics: dict[str, dict[str, float]]  # method -> metric -> value
    best_model: str
    best_baseline: str
    ndcg_difference: dict[str, float]  # mean_diff, low, high (95% paired bootstrap)
    model_meta: dict[str, Any]
    # Other model kinds minus LightGBM: mean_diff, low, high (95% paired bootstrap).
    kind_differences: dict[str, dict[str, float]] = field(default_factory=dict)
    kind_meta: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.horizon_days,
            "users": self.users,
            "metrics": self.metrics,
            "best_model": self.best_model,
            "best_baseline": self.best_baseline,
            "ndcg@10_difference": self.ndcg_difference,
            "model": {
                k: self.model_meta[k]
                for k in ("train_windows", "validation_window", "best_iteration", "train_rows")
            },
            "feature_importance": self.model_meta["feature_importance"],
            "ndcg@10_difference_to_lightgbm": self.kind_differences,
            "kinds": self.kind_meta,
        }


def run_backtest(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: dt.datetime,
    settings: Settings,
    n_resamples: int = 2000,
    kinds: tuple[str, ...] = KINDS,
) -> Backtest:
    """Every method on the same evaluated users; the rankers never see events at or after T.
    `kinds` are the model kinds besides LightGBM's row, which is always there."""
    horizon = settings.horizon_days
    k_max = max(EVAL_KS)
    train = events.filter(pl.col(TS) < as_of)
    users = evaluated_users(events, as_of, horizon)
    truth = truth_window(events, as_of, horizon)
    wanted = [MODEL_KEY, *(kind for kind in kinds if kind != MODEL_KEY)]
    trained = train_models(wanted, train, catalog, as_of, settings)
    wide = settings.model_copy(update={"k": k_max})
    recs = {
        kind: recommend_with(model.scorer, train, catalog, users, as_of, wide)
        for kind, model in trained.items()
    }
    for name, baseline in BASELINES.items():
        recs[name] = baseline(train, users, as_of, k_max)
    metrics = {
        name: evaluate_all(method_recs, truth, users, train, catalog, EVAL_KS)
        for name, method_recs in recs.items()
    }
    best_baseline = max(BASELINES, key=lambda name: metrics[name]["ndcg@10"])
    per_model = per_user_metrics(recs[MODEL_KEY], truth, users, 10).get_column("ndcg").to_numpy()
    per_base = per_user_metrics(recs[best_baseline], truth, users, 10).get_column("ndcg")
    diff = paired_bootstrap(
        per_model, per_base.to_numpy(), n_resamples=n_resamples, seed=settings.seed
    )
    kind_differences = {}
    for kind in trained:
        if kind == MODEL_KEY:
            continue
        per_kind = per_user_metrics(recs[kind], truth, users, 10).get_column("ndcg").to_numpy()
        d = paired_bootstrap(per_kind, per_model, n_resamples=n_resamples, seed=settings.seed)
        kind_differences[kind] = {"mean_diff": d.mean_diff, "low": d.low, "high": d.high}
    return Backtest(
        as_of=as_of,
        horizon_days=horizon,
        users=len(users),
        metrics=metrics,
        best_model=MODEL_KEY,
        best_baseline=best_baseline,
        ndcg_difference={"mean_diff": diff.mean_diff, "low": diff.low, "high": diff.high},
        model_meta=trained[MODEL_KEY].meta,
        kind_differences=kind_differences,
        kind_meta={
            kind: {
                key: model.meta[key]
                for key in ("validation", "blend_weight_lightgbm", "neural")
                if key in model.meta
            }
            for kind, model in trained.items()
            if kind != MODEL_KEY
        },
    )
