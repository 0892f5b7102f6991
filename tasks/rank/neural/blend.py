"""Blend of two rankers' scores: per-list z-scores, weighted; the weight is chosen on the
validation window (the models that score it never trained on it)."""

from __future__ import annotations

import numpy as np
import polars as pl

from tasks.rank.neural.model import ndcg_at

LIST = "_blend_list"


def zscore_per_list(keys: pl.Series, scores: np.ndarray) -> np.ndarray:
    """(score - list mean) / list std; the scales of a lambdarank and a softmax ranker differ,
    only their order within a customer's list means anything."""
    frame = pl.DataFrame({LIST: keys, "s": scores.astype(np.float64)})
    z = frame.select(
        ((pl.col("s") - pl.col("s").mean().over(LIST)) / pl.col("s").std(ddof=0).over(LIST))
        .fill_nan(0.0)
        .fill_null(0.0)
    )
    return z.to_series().to_numpy()


def blend(keys: pl.Series, first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """weight * z(first) + (1 - weight) * z(second)."""
    return weight * zscore_per_list(keys, first) + (1.0 - weight) * zscore_per_list(keys, second)


def mean_ndcg10(keys: pl.Series, scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean NDCG@10 over the lists with a relevant candidate, computed on padded lists."""
    import torch

    frame = pl.DataFrame({LIST: keys}).with_columns(
        pl.col(LIST).rank("dense").cast(pl.Int64).sub(1).alias("_l"),
        pl.int_range(pl.len()).over(LIST).alias("_p"),
    )
    lists, pos = frame.get_column("_l").to_numpy(), frame.get_column("_p").to_numpy()
    shape = (int(lists.max()) + 1, int(pos.max()) + 1)
    padded_s = np.full(shape, -np.inf, dtype=np.float64)
    padded_l = np.zeros(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=bool)
    padded_s[lists, pos], padded_l[lists, pos], mask[lists, pos] = scores, labels, True
    label_t = torch.from_numpy(padded_l)
    ndcg = ndcg_at(torch.from_numpy(padded_s), label_t, torch.from_numpy(mask), 10)
    keep = label_t.sum(-1) > 0
    return float(ndcg[keep].mean()) if bool(keep.any()) else 0.0


def choose_weight(
    keys: pl.Series, first: np.ndarray, second: np.ndarray, labels: np.ndarray, grid: int
) -> tuple[float, dict[float, float]]:
    """The weight in {0, 1/grid, ..., 1} with the best NDCG@10 (ties: more weight on `first`),
    and the NDCG@10 of every weight tried."""
    z1, z2 = zscore_per_list(keys, first), zscore_per_list(keys, second)
    tried = {}
    for step in range(grid, -1, -1):
        w = step / grid
        tried[w] = mean_ndcg10(keys, w * z1 + (1 - w) * z2, labels)
    best = max(tried, key=lambda w: (tried[w], w))
    return best, tried
