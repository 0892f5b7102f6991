"""The protocol backtest behind `nightrec evaluate`: at an as-of date T, train the nightly
ranker on events before T exactly as the run for T - 1 day would, and compare it with every
baseline on the same customers, with a bootstrap interval on the difference."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tasks.baselines.recommenders import ease, item_knn, popularity, repurchase
from tasks.constants import EVAL_KS, USER_ID
from tasks.evaluate.segments import HISTORY_SEGMENTS, SEGMENT, history_segments
from tasks.protocol.metrics import (
    METRIC_NAMES,
    bootstrap_interval,
    evaluate_all,
    paired_bootstrap,
    per_user_metrics,
)
from tasks.protocol.split import evaluated_users, protocol_users, truth_window
from tasks.rank.gate import MODEL_KEY
from tasks.rank.kinds import AUTO, KINDS, recommend_with, train_auto_kinds, train_models
from tasks.settings import Settings
from tasks.timeutil import events_before, known_users

BASELINES = {
    "popularity": popularity,
    "repurchase": repurchase,
    "item-kNN": item_knn,
    "EASE": ease,
}


log = logging.getLogger("nightrec.evaluate")


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
    # method -> "metric@k" -> [low, high]: 95% bootstrap interval of the mean over users
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # per-user NDCG@10 of the best model minus the best baseline, in user order
    ndcg_diffs: list[float] = field(default_factory=list)
    # one row per history segment: segment, users, then method -> mean NDCG@10
    segments: list[dict[str, Any]] = field(default_factory=list)
    # evaluated customers the nightly run publishes nothing for (no event before T): the
    # models' rows count them with zeros; the baselines serve them as they would anyone
    unserved: int = 0
    # evaluated customers without an item in the window (only fee lines): zeros for everyone
    without_truth: int = 0
    # where the user set comes from: "order lines" (protocol_users) or "purchase events"
    user_set: str = "purchase events"
    # every model row (each kind, and "auto" when asked) minus the best baseline:
    # mean_diff, low, high (95% paired bootstrap on NDCG@10)
    baseline_differences: dict[str, dict[str, float]] = field(default_factory=dict)
    # ranker.kind=auto's selection when the backtest trained through it (its row "auto" is
    # the winner's lists): winner, why, each kind's validation NDCG, the network's status
    auto_selection: dict[str, Any] = field(default_factory=dict)

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
            "intervals": self.intervals,
            "ndcg@10_by_history": self.segments,
            "user_set": self.user_set,
            "ndcg@10_difference_to_best_baseline": self.baseline_differences,
            "auto_selection": self.auto_selection,
            "unserved": self.unserved,
            "without_truth": self.without_truth,
        }


def run_backtest(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: dt.datetime,
    settings: Settings,
    n_resamples: int = 2000,
    kinds: tuple[str, ...] = tuple(KINDS),
    lines: pl.DataFrame | None = None,
    auto: bool = False,
) -> Backtest:
    """Every method on the same evaluated users; the rankers never see events at or after T.
    `kinds` are the model kinds besides LightGBM's row, which is always there. With `auto`
    the models are trained exactly as `ranker.kind=auto` trains them (`train_auto_kinds`:
    the network and the blend only within its budgets, so `kinds` is ignored) and the row
    "auto" is the winner's lists: the kind a nightly retrain at T would serve.

    `lines` (user_id, ts of every order line, items or not: tasks/ingest/activity.py) makes
    the user set the protocol's (`protocol_users`); without it, customers with a purchase
    event before T and in the window. The truth is the loaded purchase events in the window,
    whatever the ranker may recommend. The models serve the customers a nightly run would
    (an event before T); the others count with zeros (`unserved`)."""
    horizon = settings.horizon_days
    k_max = max(EVAL_KS)
    train = events_before(events, as_of)
    if lines is None:
        users, user_set = evaluated_users(events, as_of, horizon), "purchase events"
    else:
        users, user_set = protocol_users(lines, as_of, horizon), "order lines"
    truth = truth_window(events, as_of, horizon)
    served = served_users(train, users, as_of)
    wanted = [MODEL_KEY, *(kind for kind in kinds if kind != MODEL_KEY)]
    log.info(
        "backtest at %s: training %s on events before it; %s evaluated customers",
        f"{as_of:%Y-%m-%d}",
        ", ".join(wanted),
        f"{users.len():,}",
    )
    selection: dict[str, Any] = {}
    if auto:
        trained, selection = train_auto_kinds(train, catalog, as_of, settings)
    else:
        trained = train_models(wanted, train, catalog, as_of, settings)
    log.info("backtest: scoring the models and %d baselines", len(BASELINES))
    wide = settings.model_copy(update={"k": k_max})
    recs = {
        kind: recommend_with(model.scorer, train, catalog, served, as_of, wide)
        for kind, model in trained.items()
    }
    if auto:
        recs[AUTO] = recs[selection["winner"]]
    for name, baseline in BASELINES.items():
        recs[name] = baseline(train, users, as_of, k_max)
    metrics = {
        name: evaluate_all(method_recs, truth, users, train, catalog, EVAL_KS)
        for name, method_recs in recs.items()
    }
    best_baseline = max(BASELINES, key=lambda name: metrics[name]["ndcg@10"])
    per_user = {
        (name, k): per_user_metrics(method_recs, truth, users, k)
        for name, method_recs in recs.items()
        for k in EVAL_KS
    }
    log.info("backtest: %d bootstrap resamples per metric", n_resamples)
    intervals = {
        name: {
            f"{metric}@{k}": list(
                bootstrap_interval(
                    per_user[name, k].get_column(metric).to_numpy(), n_resamples, settings.seed
                )
            )
            for k in EVAL_KS
            for metric in METRIC_NAMES
        }
        for name in recs
    }
    per_model = per_user[MODEL_KEY, 10].get_column("ndcg").to_numpy()
    per_base = per_user[best_baseline, 10].get_column("ndcg").to_numpy()
    diff = paired_bootstrap(per_model, per_base, n_resamples=n_resamples, seed=settings.seed)
    baseline_differences = {}
    for name in (*trained, *([AUTO] if auto else [])):
        per_name = per_user[name, 10].get_column("ndcg").to_numpy()
        d = paired_bootstrap(per_name, per_base, n_resamples=n_resamples, seed=settings.seed)
        baseline_differences[name] = {"mean_diff": d.mean_diff, "low": d.low, "high": d.high}
    segments = _ndcg_by_history(per_user, list(recs), train, users, as_of)
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
        intervals=intervals,
        ndcg_diffs=(per_model - per_base).tolist(),
        segments=segments,
        unserved=len(users) - len(served),
        without_truth=len(users)
        - truth.join(pl.DataFrame({USER_ID: users}), on=USER_ID, how="semi")
        .get_column(USER_ID)
        .n_unique(),
        user_set=user_set,
        baseline_differences=baseline_differences,
        auto_selection=selection,
    )


def served_users(events: pl.DataFrame, users: pl.Series, as_of: dt.datetime) -> pl.Series:
    """The evaluated users a nightly run at `as_of` publishes lists for: those with an event
    before it (`known_users`, as the run's rank step), sorted."""
    return users.filter(users.is_in(known_users(events, as_of).implode())).sort()


def _ndcg_by_history(
    per_user: dict[tuple[str, int], pl.DataFrame],
    methods: list[str],
    train: pl.DataFrame,
    users: pl.Series,
    as_of: dt.datetime,
) -> list[dict[str, Any]]:
    """Mean NDCG@10 per method within each history segment that has users."""
    frame = history_segments(train, users, as_of).select(USER_ID, SEGMENT)
    for name in methods:
        ndcg = per_user[name, 10].select(USER_ID, pl.col("ndcg").alias(name))
        frame = frame.join(ndcg, on=USER_ID, how="left")
    rows = []
    for label, _, _ in HISTORY_SEGMENTS:
        part = frame.filter(pl.col(SEGMENT) == label)
        if part.height:
            means = {name: float(part.get_column(name).mean()) for name in methods}
            rows.append({"segment": label, "users": part.height, **means})
    return rows
