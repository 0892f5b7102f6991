"""Population stability index (PSI), in numpy.

No library: the ones that offer it (evidently, nannyml, alibi-detect) pull pandas/plotly/
scikit-learn ranges that clash with our pins, and the measure is a few lines. Definition
(Siddiqi, credit scoring): bins from the reference's quantiles, shares `e` (reference) and
`a` (actual) per bin, PSI = sum((a - e) * ln(a / e)); a share of 0 is floored at EPSILON so
an empty bin counts as very unlikely, not infinitely so. Missing values have a bin of their
own. Rule of thumb: < 0.1 no shift, 0.1-0.25 some, > 0.25 a large one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

EPSILON = 1e-4


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges: the reference's quantiles at 1/bins, ..., (bins-1)/bins, distinct."""
    values = np.asarray(reference, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of `values` per bin: (-inf, e1], (e1, e2], ..., (ek, inf), then missing."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(edges.size + 2)
    finite = np.isfinite(values)
    counts = np.bincount(
        np.searchsorted(edges, values[finite], side="left"), minlength=edges.size + 1
    )
    return np.append(counts, (~finite).sum()) / values.size


def psi_of_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(reference: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """PSI of `actual` against `reference` on the reference's quantile bins."""
    edges = quantile_edges(reference, bins)
    return psi_of_shares(shares(reference, edges), shares(actual, edges))


def categorical_psi(reference: dict[str, int], actual: dict[str, int]) -> float:
    """PSI over the categories either side counts (an event-type mix, say)."""
    cats = sorted({*reference, *actual})
    ref = np.array([reference.get(c, 0) for c in cats], dtype=np.float64)
    act = np.array([actual.get(c, 0) for c in cats], dtype=np.float64)
    return psi_of_shares(ref / max(ref.sum(), 1.0), act / max(act.sum(), 1.0))


def profile(values: np.ndarray, bins: int) -> dict[str, list[float]]:
    """What a later PSI needs of a reference, small enough for a model's meta.json."""
    edges = quantile_edges(values, bins)
    return {"edges": edges.tolist(), "shares": shares(values, edges).tolist()}


def psi_against(profile_: dict[str, list[float]], actual: np.ndarray) -> float:
    edges = np.asarray(profile_["edges"], dtype=np.float64)
    return psi_of_shares(np.asarray(profile_["shares"]), shares(actual, edges))


def feature_profiles(frame: pl.DataFrame, features: list[str], bins: int) -> dict[str, Any]:
    """Each feature's quantile bins and shares: the reference a later feature drift uses."""
    return {
        name: profile(frame.get_column(name).cast(pl.Float64).to_numpy(), bins)
        for name in features
        if name in frame.columns
    }
