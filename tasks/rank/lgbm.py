"""LightGBM lambdarank: fit with early stopping on a later window, predict scores."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from tasks.constants import ITEM_ID, USER_ID
from tasks.rank.dataset import LABEL
from tasks.settings import RankerSettings


def booster_params(cfg: RankerSettings, seed: int) -> dict:
    """LightGBM parameters; deterministic so a rerun of a day trains the same model."""
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "lambdarank_truncation_level": cfg.lambdarank_truncation_level,
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": 1,
        "num_threads": cfg.num_threads,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }


def _float32_matrix(frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    """The feature columns as one float32 matrix, cast column by column in Polars: the same
    values as a float64 matrix cast afterwards (one rounding either way), without holding the
    float64 copy (half the peak of a large training set)."""
    return frame.select(pl.col(features).cast(pl.Float32)).to_numpy()


def ordered_float32_matrix(
    frame: pl.DataFrame, features: list[str], order: np.ndarray
) -> np.ndarray:
    """`_float32_matrix(frame, features)[order]`, filled a column at a time into one matrix:
    the same array without a second matrix-sized copy (a gather of the whole matrix held
    both, the peak of a retraining day on a large shop)."""
    matrix = np.empty((len(order), len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        matrix[:, j] = frame.get_column(name).cast(pl.Float32).to_numpy()[order]
    return matrix


def content_order(frame: pl.DataFrame, features: list[str]) -> pl.Series:
    """Row indices of the training rows grouped by customer, groups ordered by their content
    (a hash of their items, labels and features) and rows by item, not by the customer's id:
    bagging samples rows by position, so an order by id would make the model depend on how
    ids are spelled, and pseudonymized ids (README, Privacy) would train another model.
    Features are hashed as the float32 LightGBM reads: a float64 may differ in its last bit
    between a window built whole and in shards, and that must not reorder the rows. Groups of
    the same content are interchangeable; the id only breaks their ties. Indices, not a
    sorted copy: the sort moves three narrow columns, never the feature table."""
    as_read = [pl.col(f).cast(pl.Float32) for f in features]
    content = pl.struct([pl.col(ITEM_ID), pl.col(LABEL), *as_read]).hash(seed=0)
    keys = frame.select(USER_ID, ITEM_ID, content.alias("_h")).with_row_index("_row")
    group_key = keys.group_by(USER_ID).agg(
        pl.col("_h").sort().implode().hash(seed=0).first().alias("_group")
    )
    return (
        keys.join(group_key, on=USER_ID, how="left")
        .sort("_group", USER_ID, ITEM_ID)
        .get_column("_row")
    )


def _dataset(
    frame: pl.DataFrame,
    features: list[str],
    params: dict[str, Any],
    reference: lgb.Dataset | None = None,
) -> lgb.Dataset:
    """Binned here, under the booster's own params (the bins lgb.train would make): the
    float32 matrix is freed on return instead of living through training beside LightGBM's
    bins. Rows in `content_order`."""
    order = content_order(frame, features)
    keys = frame.select(USER_ID, LABEL)[order]
    groups = keys.group_by(USER_ID, maintain_order=True).len().get_column("len").to_numpy()
    dataset = lgb.Dataset(
        ordered_float32_matrix(frame, features, order.to_numpy()),
        label=keys.get_column(LABEL).to_numpy(),
        group=groups,
        feature_name=features,
        reference=reference,
        params=params,
        free_raw_data=True,
    )
    return dataset.construct()


log = logging.getLogger("nightrec.rank")


@dataclass(frozen=True)
class FitResult:
    booster: lgb.Booster
    best_iteration: int
    valid_ndcg10: float | None


PROGRESS_EVERY_ROUNDS = 50


def _log_progress(env: lgb.callback.CallbackEnv) -> None:
    """One line every PROGRESS_EVERY_ROUNDS rounds: round / cap and the validation NDCG."""
    done = env.iteration + 1
    if done % PROGRESS_EVERY_ROUNDS and done != env.end_iteration:
        return
    scores = ", ".join(
        f"{name} {metric} {value:.4f}" for name, metric, value, _ in env.evaluation_result_list
    )
    log.info("lightgbm round %d/%d%s", done, env.end_iteration, f": {scores}" if scores else "")


def fit(
    train: pl.DataFrame,
    features: list[str],
    cfg: RankerSettings,
    seed: int,
    valid: pl.DataFrame | None = None,
    num_boost_round: int | None = None,
) -> FitResult:
    """Fit on `train`; with `valid`, stop early on its NDCG@10."""
    params = booster_params(cfg, seed)
    train_set = _dataset(train, features, params)
    rounds = num_boost_round or cfg.num_boost_round
    if valid is None:
        booster = lgb.train(params, train_set, num_boost_round=rounds, callbacks=[_log_progress])
        return FitResult(booster, rounds, None)
    valid_set = _dataset(valid, features, params, reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[
            lgb.early_stopping(cfg.early_stopping_rounds, verbose=False),
            _log_progress,
        ],
    )
    best = booster.best_iteration or rounds
    return FitResult(booster, best, float(booster.best_score["valid"]["ndcg@10"]))


def predict(booster: lgb.Booster, frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    return booster.predict(_float32_matrix(frame, features))


def feature_importance(booster: lgb.Booster) -> dict[str, float]:
    """Total gain per feature, largest first."""
    gains = booster.feature_importance(importance_type="gain")
    pairs = sorted(zip(booster.feature_name(), gains, strict=True), key=lambda p: -p[1])
    return {name: round(float(gain), 3) for name, gain in pairs}
