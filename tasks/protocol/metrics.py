"""Ranking and beyond-accuracy metrics, vectorised over Polars frames.

Definitions follow baselines.md so that every number we quote is comparable with it:
binary relevance, only ranks <= k count, Recall = hits / |truth|, NDCG with the ideal DCG
over min(|truth|, k) items, MAP@k divided by min(|truth|, k), Precision = hits / k.
Users absent from the recommendations still count, with zeros: a model that serves nobody
must not look good by averaging over the few it serves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from tasks.constants import (
    CATEGORY,
    EVAL_KS,
    EVENT_TYPE,
    ITEM_ID,
    PURCHASE,
    RANK,
    USER_ID,
)

METRIC_NAMES = ("ndcg", "recall", "map", "hitrate", "precision")

_N_TRUTH = "_n_truth"
_N_HITS = "_n_hits"
_DCG = "_dcg"
_AP_SUM = "_ap_sum"
_IDEAL_DEPTH = "_ideal_depth"
_IDCG = "_idcg"


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _users_frame(users: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({USER_ID: users}).unique().sort(USER_ID)


def _top_k(recs: pl.DataFrame, k: int) -> pl.DataFrame:
    """(user_id, item_id, rank) with rank <= k, an item counted once at its best rank."""
    return (
        recs.filter(pl.col(RANK) <= k)
        .group_by(USER_ID, ITEM_ID)
        .agg(pl.col(RANK).min())
        .sort(USER_ID, RANK, ITEM_ID)
    )


def per_user_metrics(
    recs: pl.DataFrame, truth: pl.DataFrame, users: pl.Series, k: int
) -> pl.DataFrame:
    """One row per evaluated user, sorted: user_id, ndcg, recall, map, hitrate, precision.

    Per-user rows (not only means) feed the paired bootstrap between two models.
    """
    _check_k(k)
    base = _users_frame(users)
    truth_u = truth.select(USER_ID, ITEM_ID).unique().join(base, on=USER_ID, how="semi")
    n_truth = truth_u.group_by(USER_ID).agg(pl.len().alias(_N_TRUTH))

    hits = (
        _top_k(recs, k)
        .join(base, on=USER_ID, how="semi")
        .join(truth_u, on=[USER_ID, ITEM_ID], how="semi")
        .with_columns(
            # position of this hit among the user's hits = hits within the top `rank`
            pl.col(RANK).rank("ordinal").over(USER_ID).alias("_hit_no"),
            pl.col(RANK).cast(pl.Float64).alias("_r"),
        )
        .group_by(USER_ID)
        .agg(
            pl.len().alias(_N_HITS),
            (1.0 / (pl.col("_r") + 1.0).log(2)).sum().alias(_DCG),
            (pl.col("_hit_no") / pl.col("_r")).sum().alias(_AP_SUM),
        )
    )

    ideal = pl.DataFrame(
        {
            _IDEAL_DEPTH: np.arange(0, k + 1, dtype=np.int64),
            _IDCG: np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))]),
        }
    )
    frame = (
        base.join(n_truth, on=USER_ID, how="left")
        .join(hits, on=USER_ID, how="left")
        .with_columns(
            pl.col(_N_TRUTH).fill_null(0).cast(pl.Int64),
            pl.col(_N_HITS).fill_null(0).cast(pl.Int64),
            pl.col(_DCG).fill_null(0.0),
            pl.col(_AP_SUM).fill_null(0.0),
        )
        .with_columns(pl.min_horizontal(pl.col(_N_TRUTH), pl.lit(k, pl.Int64)).alias(_IDEAL_DEPTH))
        .join(ideal, on=_IDEAL_DEPTH, how="left")
    )

    def safe_div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
        # a user without truth has nothing to find: zero, not NaN
        return pl.when(den > 0).then(num / den).otherwise(0.0)

    return frame.select(
        USER_ID,
        safe_div(pl.col(_DCG), pl.col(_IDCG)).alias("ndcg"),
        safe_div(pl.col(_N_HITS).cast(pl.Float64), pl.col(_N_TRUTH)).alias("recall"),
        safe_div(pl.col(_AP_SUM), pl.col(_IDEAL_DEPTH)).alias("map"),
        (pl.col(_N_HITS) > 0).cast(pl.Float64).alias("hitrate"),
        (pl.col(_N_HITS).cast(pl.Float64) / k).alias("precision"),
    ).sort(USER_ID)  # joins do not promise to keep row order


def ranking_metrics(
    recs: pl.DataFrame, truth: pl.DataFrame, users: pl.Series, k: int
) -> dict[str, float]:
    """Means over evaluated users, keyed like "ndcg@10"; NaN when there is no user."""
    per_user = per_user_metrics(recs, truth, users, k)
    if per_user.height == 0:
        return {f"{name}@{k}": math.nan for name in METRIC_NAMES}
    means = per_user.select(pl.col(name).mean() for name in METRIC_NAMES).row(0)
    return {f"{name}@{k}": float(v) for name, v in zip(METRIC_NAMES, means, strict=True)}


def items_covered(recs: pl.DataFrame, k: int) -> int:
    """Distinct items that appear in any top-k list."""
    _check_k(k)
    return recs.filter(pl.col(RANK) <= k).get_column(ITEM_ID).n_unique()


def coverage(recs: pl.DataFrame, k: int, catalog_size: int) -> float:
    """Share of the catalog that some user sees in a top-k list."""
    if catalog_size <= 0:
        raise ValueError(f"catalog_size must be positive, got {catalog_size}")
    return items_covered(recs, k) / catalog_size


def novelty(recs: pl.DataFrame, train_events: pl.DataFrame, k: int) -> float:
    """Mean self-information -log2 p(item) over recommended (user, item) pairs in the top k.

    p(item) is the share of training purchasers who bought the item; an item nobody bought
    gets 1 / (n_users + 1), i.e. slightly rarer than an item bought once. NaN without recs.
    """
    _check_k(k)
    purchases = train_events.filter(pl.col(EVENT_TYPE) == PURCHASE).select(USER_ID, ITEM_ID)
    n_users = purchases.get_column(USER_ID).n_unique()
    popularity = purchases.unique().group_by(ITEM_ID).agg(pl.len().alias("_buyers"))
    top = _top_k(recs, k)
    if top.height == 0:
        return math.nan
    p = pl.col("_buyers").truediv(max(n_users, 1)).fill_null(1.0 / (n_users + 1))
    value = top.join(popularity, on=ITEM_ID, how="left").select((-p.log(2)).mean()).item()
    return float(value)


def diversity(recs: pl.DataFrame, catalog: pl.DataFrame, k: int) -> float:
    """Mean intra-list diversity: share of item pairs in a top-k list with different category.

    An item with no known category is its own category (it differs from every other item):
    missing metadata must not make a list look monotonous. Lists with fewer than two items
    have no pairs and are left out of the mean; NaN when no list has a pair.
    """
    _check_k(k)
    categories = catalog.select(ITEM_ID, CATEGORY).unique(ITEM_ID, keep="first")
    per_category = (
        _top_k(recs, k)
        .join(categories, on=ITEM_ID, how="left")
        .with_columns(
            pl.when(pl.col(CATEGORY).is_null())
            .then(pl.lit("\x00unknown:") + pl.col(ITEM_ID))
            .otherwise(pl.col(CATEGORY).cast(pl.Utf8))
            .alias("_cat")
        )
        .group_by(USER_ID, "_cat")
        .agg(pl.len().cast(pl.Float64).alias("_n"))
    )
    per_user = (
        per_category.group_by(USER_ID)
        .agg(
            pl.col("_n").sum().alias("_items"),
            (pl.col("_n") * (pl.col("_n") - 1) / 2).sum().alias("_same"),
        )
        .filter(pl.col("_items") >= 2)
        .select(1.0 - pl.col("_same") / (pl.col("_items") * (pl.col("_items") - 1) / 2))
    )
    if per_user.height == 0:
        return math.nan
    return float(per_user.to_series().mean())


@dataclass(frozen=True)
class BootstrapResult:
    """Mean of a - b with a percentile confidence interval."""

    mean_diff: float
    low: float
    high: float


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Percentile interval of mean(a - b), resampling users with replacement.

    Paired because both models are scored on the same users: the per-user difference
    removes the large between-user variance that unpaired intervals would carry.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and aligned per user, got {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("paired_bootstrap needs at least one user")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    diff = a - b
    n = diff.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    # bounded memory: about 4M indices per chunk, whatever the number of users
    chunk = max(1, 4_000_000 // n)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(mean_diff=float(diff.mean()), low=float(low), high=float(high))


def bootstrap_interval(
    values: np.ndarray, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of per-user values, resampling users."""
    values = np.asarray(values, dtype=np.float64)
    result = paired_bootstrap(values, np.zeros_like(values), n_resamples, seed, confidence)
    return result.low, result.high


def evaluate_all(
    recs: pl.DataFrame,
    truth: pl.DataFrame,
    users: pl.Series,
    train_events: pl.DataFrame,
    catalog: pl.DataFrame,
    ks: Sequence[int] = EVAL_KS,
) -> dict[str, float]:
    """Every protocol metric at each k, plus the number of evaluated users.

    Coverage is measured over the recommendations of the evaluated users only, against the
    number of distinct catalog items.
    """
    base = _users_frame(users)
    recs_u = recs.join(base, on=USER_ID, how="semi")
    catalog_size = catalog.get_column(ITEM_ID).n_unique()
    out: dict[str, float] = {"users": base.height}
    for k in ks:
        out.update(ranking_metrics(recs_u, truth, base.get_column(USER_ID), k))
        out[f"items_covered@{k}"] = items_covered(recs_u, k)
        out[f"coverage@{k}"] = coverage(recs_u, k, catalog_size)
        out[f"novelty@{k}"] = novelty(recs_u, train_events, k)
        out[f"diversity@{k}"] = diversity(recs_u, catalog, k)
    return out
