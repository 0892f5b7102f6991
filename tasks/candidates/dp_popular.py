"""The popularity fallback list, optionally with differentially private counts.

The fallback list (popular items that pad a short list, and the list a run serves when no
model can) is the one list built from every customer's behaviour and shown to anyone. With
`fallback.dp_epsilon` set, its counts (distinct buyers per item in the last
`candidates.popular_days` days) are released with epsilon-differential privacy towards any one
customer, and the list is their top items.

Mechanism (why it is epsilon-DP):
- Bounded contribution: each customer counts for at most `m` = `fallback.dp_max_items_per_user`
  items, their most recently bought ones in the window (ties by item id): a choice made from
  that customer's own rows only. Adding or removing one customer then changes at most `m`
  counts, each by exactly 1: the L1 sensitivity of the count vector is `m`.
- Noise: every count of the domain gets independent two-sided geometric noise (the discrete
  Laplace mechanism) with P(z) proportional to alpha^|z|, alpha = exp(-epsilon / m) (Ghosh,
  Roughgarden and Sundararajan 2009): epsilon-DP for an integer vector of L1 sensitivity m.
  Integer noise avoids the floating-point Laplace flaw (Mironov 2012).
- Domain: the items the list may hold (the catalog less forbidden items), every one noised,
  those nobody bought included (count 0). The catalog is public; noising only bought items
  would reveal that someone bought them.
- The top-n selection, the order and the padding built from them are post-processing.

Each night's list is one release; nights whose windows hold the same purchase compose (a
customer in a 30-day window is in up to 30 nightly lists: 30 x epsilon by basic composition).

Library: the noise is numpy's (a PCG64 generator seeded from `fallback.dp_seed`, or
`settings.seed`, and the run's as-of instant), not a DP library's, because the run must be
reproducible (a rerun of a day publishes the same list): OpenDP 0.16 installs cleanly but
draws from the OS's secure generator and offers no seed, and diffprivlib 0.6.6 (seedable)
fails to import beside scikit-learn 1.9.1. A seeded generator is only as private as its seed
is secret: whoever knows the seed and the as-of day can subtract the noise.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from tasks.candidates.generate import popular_items
from tasks.constants import EVENT_TYPE, ITEM_ID, PURCHASE, TS, USER_ID
from tasks.settings import Settings

EPOCH = dt.datetime(1970, 1, 1)


def dp_seed(base_seed: int, as_of: dt.datetime) -> np.random.SeedSequence:
    """One seed per run: the configured seed mixed with the as-of instant (whole seconds)."""
    return np.random.SeedSequence([base_seed, int((as_of - EPOCH).total_seconds())])


def two_sided_geometric(
    size: int, epsilon: float, sensitivity: int, rng: np.random.Generator
) -> np.ndarray:
    """Integer noise with P(z) proportional to exp(-epsilon |z| / sensitivity): the difference
    of two geometric variables with success probability 1 - exp(-epsilon / sensitivity)."""
    p = -np.expm1(-epsilon / sensitivity)
    return rng.geometric(p, size).astype(np.int64) - rng.geometric(p, size).astype(np.int64)


def dp_popular_items(
    events: pl.DataFrame,
    as_of: dt.datetime,
    days: int,
    n: int,
    domain: pl.Series,
    epsilon: float,
    max_items_per_user: int,
    seed: np.random.SeedSequence,
) -> pl.DataFrame:
    """item_id, pop_score (noisy distinct buyers in the last `days` days), pop_rank: the `n`
    items of `domain` with the highest noisy counts (ties by item_id), epsilon-DP as the module
    docstring argues."""
    window = events.filter(
        (pl.col(EVENT_TYPE) == PURCHASE)
        & (pl.col(TS) < as_of)
        & (pl.col(TS) >= as_of - dt.timedelta(days=days))
    )
    capped = (
        window.group_by(USER_ID, ITEM_ID)
        .agg(pl.col(TS).max().alias("_last"))
        .sort([USER_ID, "_last", ITEM_ID], descending=[False, True, False])
        .group_by(USER_ID, maintain_order=True)
        .head(max_items_per_user)
    )
    counts = capped.group_by(ITEM_ID).agg(pl.len().cast(pl.Int64).alias("_count"))
    items = pl.DataFrame({ITEM_ID: domain.cast(pl.Utf8).unique().sort()})
    exact = items.join(counts, on=ITEM_ID, how="left").get_column("_count").fill_null(0).to_numpy()
    rng = np.random.Generator(np.random.PCG64(seed))
    noisy = exact + two_sided_geometric(items.height, epsilon, max_items_per_user, rng)
    return (
        items.with_columns(pl.Series("pop_score", noisy.astype(np.float64)))
        .sort(["pop_score", ITEM_ID], descending=[True, False])
        .head(n)
        .with_columns(pl.int_range(1, pl.len() + 1).alias("pop_rank"))
    )


def fallback_popular(
    events: pl.DataFrame,
    as_of: dt.datetime,
    settings: Settings,
    domain: pl.Series,
    allowed: pl.Series | None = None,
) -> pl.Series:
    """The 2K items the run pads short lists with (and the baseline serves), best first:
    exact distinct-buyer counts, or with `fallback.dp_epsilon` the DP counts over `domain`
    (the catalog's items), limited to `allowed` items when given."""
    days, n = settings.candidates.popular_days, 2 * settings.k
    cfg = settings.fallback
    if cfg.dp_epsilon is None:
        ranked = popular_items(events, as_of, days, events.height + 1 if allowed is not None else n)
    else:
        scope = domain if allowed is None else allowed
        ranked = dp_popular_items(
            events,
            as_of,
            days,
            scope.len(),
            scope,
            cfg.dp_epsilon,
            cfg.dp_max_items_per_user,
            dp_seed(settings.seed if cfg.dp_seed is None else cfg.dp_seed, as_of),
        )
    if allowed is not None:
        ranked = ranked.filter(pl.col(ITEM_ID).is_in(allowed.implode()))
    return ranked.head(n).get_column(ITEM_ID)


def dp_note(settings: Settings) -> str | None:
    """One line for the manifest's notes when the fallback's counts are private."""
    cfg = settings.fallback
    if cfg.dp_epsilon is None:
        return None
    return (
        f"popularity fallback: differentially private counts (epsilon {cfg.dp_epsilon:g}, "
        f"at most {cfg.dp_max_items_per_user} items per customer)"
    )
