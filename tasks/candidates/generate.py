"""Candidate generators (pure functions over an events frame cut at as_of).

Sources:
- hist: the customer's own items, recency-weighted (purchases count more than carts/views);
- covis: items bought in the same orders as the customer's recent items, time-decayed;
- ease: EASE over the binary customer x item purchase matrix (tasks.baselines.recommenders),
  on the most-bought items only when the catalog is too large for `ease_memory_mib`;
- pop: the items with most distinct buyers in the recent past.

The merged list orders a customer's candidates by weighted reciprocal-rank fusion of the
source ranks (`merged_rank`, 1 = best) and keeps the best `max_per_user`.

Every source's memory is bounded whatever the catalog: EASE by its item budget, the
co-purchase self-join by `copurchase_max_pairs` basket pairs at a time. A source that had to
degrade says so in a `CandidateReport` (and logs a warning on `nightrec.candidates`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tasks.baselines.recommenders import EaseFit, ease_scope, ease_top_items, fit_ease
from tasks.constants import (
    CART,
    EVENT_TYPE,
    ITEM_ID,
    ORDER_ID,
    PURCHASE,
    SCORE,
    TS,
    USER_ID,
    VIEW,
)
from tasks.settings import CandidateSettings
from tasks.timeutil import age_days, events_before

EVENT_WEIGHTS = {PURCHASE: 1.0, CART: 0.5, VIEW: 0.1}
SOURCES = ("hist", "covis", "ease", "pop")
MISSING_RANK = 9_999
MERGED_RANK = "merged_rank"
COVIS_ANCHOR = "covis_anchor"

log = logging.getLogger("nightrec.candidates")


@dataclass
class CandidateReport:
    """What the candidate step did beyond the plain sources, for the run's manifest.

    `notes` maps a source to one line saying how it degraded (empty when none did);
    `ease_items` / `catalog_items` are the items EASE worked on and the items purchased."""

    notes: dict[str, str] = field(default_factory=dict)
    ease_items: int | None = None
    catalog_items: int | None = None

    @property
    def degraded(self) -> bool:
        return bool(self.notes)


def _ranked(frame: pl.DataFrame, score: str, rank: str, per_user: int) -> pl.DataFrame:
    """Keep the best `per_user` rows per user by score (ties: item_id) and number them."""
    return (
        frame.sort([USER_ID, score, ITEM_ID], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over(USER_ID).alias(rank))
        .filter(pl.col(rank) <= per_user)
    )


def history_candidates(
    events: pl.DataFrame, as_of: dt.datetime, cfg: CandidateSettings
) -> pl.DataFrame:
    """user_id, item_id, hist_score, hist_rank from the customer's own interactions."""
    weight = pl.col(EVENT_TYPE).replace_strict(EVENT_WEIGHTS, default=0.0, return_dtype=pl.Float64)
    scored = (
        events_before(events, as_of)
        .group_by(USER_ID, ITEM_ID)
        .agg((weight * (-age_days(as_of) / cfg.history_tau_days).exp()).sum().alias("hist_score"))
    )
    return _ranked(scored, "hist_score", "hist_rank", cfg.history_per_user)


def _baskets(purchases: pl.DataFrame, max_basket: int) -> pl.DataFrame:
    """Distinct items per basket (order, or customer-day when no order id), capped in size."""
    basket = pl.coalesce(
        pl.col(ORDER_ID), pl.col(USER_ID) + pl.lit("@") + pl.col(TS).dt.date().cast(pl.Utf8)
    )
    items = (
        purchases.select(basket.alias("basket"), ITEM_ID, TS)
        .group_by("basket", ITEM_ID)
        .agg(pl.col(TS).max())
    )
    # Large wholesale orders would dominate the pair count; keep a deterministic subset.
    return (
        items.with_columns(pl.col(ITEM_ID).hash(seed=7).alias("_h"))
        .sort("basket", "_h")
        .with_columns(
            pl.int_range(pl.len()).over("basket").alias("_pos"),
            pl.len().over("basket").alias("basket_size"),
        )
        .filter(pl.col("_pos") < max_basket)
        .drop("_h", "_pos")
    )


def item_neighbors(
    purchases: pl.DataFrame, as_of: dt.datetime, cfg: CandidateSettings
) -> pl.DataFrame:
    """item_id, neighbor_id, sim: time-decayed co-purchase counts, cosine-normalised."""
    recent = purchases.filter(
        (pl.col(TS) < as_of) & (pl.col(TS) >= as_of - dt.timedelta(days=cfg.copurchase_days))
    )
    baskets = _baskets(recent, cfg.copurchase_max_basket).with_columns(
        (
            (-age_days(as_of) / cfg.copurchase_days).exp()
            / (pl.col("basket_size").cast(pl.Float64) + 1.0).log(2)
        ).alias("w")
    )
    item_weight = baskets.group_by(ITEM_ID).agg(pl.col("w").sum().alias("item_w"))
    # Integer codes for baskets and items, and the self-join a slice of items at a time:
    # the pairs frame grows with basket size squared, so it is cut to about
    # `copurchase_max_pairs` rows. Every pair of an item is in its slice, so the best
    # neighbours per item are exact.
    codes = item_weight.select(ITEM_ID).sort(ITEM_ID).with_row_index("_item", offset=0)
    coded = baskets.join(codes, on=ITEM_ID).select(
        pl.col("basket").rank("dense").cast(pl.UInt32).alias("_basket"), "_item", "w"
    )
    size = coded.group_by("_basket").len()
    pairs_per_item = (
        coded.join(size, on="_basket")
        .group_by("_item")
        .agg(pl.col("len").cast(pl.Int64).sum().alias("_pairs"))
        .sort("_item")
        .with_columns(pl.col("_pairs").cum_sum().alias("_cum"))
    )
    slice_of = (pl.col("_cum") - 1) // cfg.copurchase_max_pairs
    slices = pairs_per_item.select("_item", slice_of.alias("_slice"))
    right = coded.select("_basket", pl.col("_item").alias("_neighbor"))
    weight_of = (
        item_weight.join(codes, on=ITEM_ID).sort("_item").get_column("item_w").to_numpy()
    )  # item_w by code: codes number 0..n-1
    parts = []
    for (_,), left in coded.join(slices, on="_item").group_by(["_slice"], maintain_order=True):
        pairs = (
            left.select("_basket", "_item", "w")
            .join(right, on="_basket")
            .filter(pl.col("_item") != pl.col("_neighbor"))
            .group_by("_item", "_neighbor")
            .agg(pl.col("w").sum().alias("co_w"))
        )
        parts.append(_coded_neighbors(pairs, weight_of, cfg.copurchase_neighbors))
    best = (
        pl.concat(parts)
        if parts
        else _coded_neighbors(
            pl.DataFrame(schema={"_item": pl.UInt32, "_neighbor": pl.UInt32, "co_w": pl.Float64}),
            weight_of,
            cfg.copurchase_neighbors,
        )
    )
    names = codes.select("_item", ITEM_ID)
    return (
        best.join(names, on="_item")
        .join(names.rename({"_item": "_neighbor", ITEM_ID: "neighbor_id"}), on="_neighbor")
        .sort([ITEM_ID, "sim", "neighbor_id"], descending=[False, True, False])
        .select(ITEM_ID, "neighbor_id", "sim")
    )


def _coded_neighbors(pairs: pl.DataFrame, weight_of: np.ndarray, neighbors: int) -> pl.DataFrame:
    """The best `neighbors` per item by co_w / sqrt(item_w * neighbor_w), over integer codes
    (`_item`, `_neighbor`; `weight_of[code]` is item_w); ties by neighbour id, which the codes
    follow (sorted ids). Only the rows at or above an item's `neighbors`-th best are sorted."""
    item = pairs.get_column("_item").to_numpy()
    neighbor = pairs.get_column("_neighbor").to_numpy()
    sim = pairs.get_column("co_w").to_numpy() / np.sqrt(weight_of[item] * weight_of[neighbor])
    sims = pl.DataFrame(
        {"_item": item, "_neighbor": neighbor, "sim": sim},
        schema={"_item": pl.UInt32, "_neighbor": pl.UInt32, "sim": pl.Float64},
    )
    best = pl.col("sim").top_k(neighbors).min().over("_item")
    return (
        sims.filter(pl.col("sim") >= best)
        .sort(["_item", "sim", "_neighbor"], descending=[False, True, False])
        .group_by("_item", maintain_order=True)
        .head(neighbors)
    )


def _recent_items(purchases: pl.DataFrame, n: int) -> pl.DataFrame:
    """user_id, item_id, recency_pos (1 = most recently bought), the `n` latest per user."""
    return (
        purchases.group_by(USER_ID, ITEM_ID)
        .agg(pl.col(TS).max().alias("last_ts"))
        .sort([USER_ID, "last_ts", ITEM_ID], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over(USER_ID).alias("recency_pos"))
        .filter(pl.col("recency_pos") <= n)
    )


def _neighbor_scores(
    recent_items: pl.DataFrame,
    neighbors: pl.DataFrame,
    source: str,
    per_user: int,
    anchors: bool = False,
) -> pl.DataFrame:
    """Score = sum over the user's recent items of sim / sqrt(recency position). With
    `anchors`, also `<source>_anchor`: the recent item that contributed most, which an
    explanation names ("bought together with ..."). An arg-max (exact ties, which need two
    items whose similarity over the square root of their distinct recency positions is the
    same float, go to the first one met): a sort per group costs 4 s on Online Retail, this
    0.4 s."""
    contribution = (pl.col("sim") / pl.col("recency_pos").cast(pl.Float64).sqrt()).alias("_c")
    aggs = [pl.col("_c").sum().alias(f"{source}_score")]
    if anchors:
        aggs.append(pl.col("_anchor").get(pl.col("_c").arg_max()).alias(f"{source}_anchor"))
    scored = (
        recent_items.join(neighbors, on=ITEM_ID)
        .select(USER_ID, pl.col(ITEM_ID).alias("_anchor"), "neighbor_id", contribution)
        .group_by(USER_ID, pl.col("neighbor_id").alias(ITEM_ID))
        .agg(aggs)
    )
    return _ranked(scored, f"{source}_score", f"{source}_rank", per_user)


def copurchase_candidates(
    events: pl.DataFrame,
    as_of: dt.datetime,
    cfg: CandidateSettings,
    users: pl.Series | None = None,
    neighbors: pl.DataFrame | None = None,
    anchors: bool = False,
) -> pl.DataFrame:
    """user_id, item_id, covis_score, covis_rank: neighbours of the customer's recent items
    (for `users` only when given). The neighbours come from every customer: pass them
    (`item_neighbors` of all events) when `events` holds only some customers. With
    `anchors`, also covis_anchor (the recent item that contributed most)."""
    purchases = events.filter((pl.col(EVENT_TYPE) == PURCHASE) & (pl.col(TS) < as_of))
    if neighbors is None:
        neighbors = item_neighbors(purchases, as_of, cfg)
    buyers = (
        purchases if users is None else purchases.filter(pl.col(USER_ID).is_in(users.implode()))
    )
    recent_items = _recent_items(buyers, cfg.copurchase_recent_items)
    return _neighbor_scores(recent_items, neighbors, "covis", cfg.copurchase_per_user, anchors)


def fit_ease_source(
    events: pl.DataFrame,
    as_of: dt.datetime,
    cfg: CandidateSettings,
    report: CandidateReport | None = None,
) -> EaseFit | None:
    """EASE fit on every customer, on at most the items `ease_memory_mib` / `ease_max_items`
    admit; `report` (when given) records how many. None when the source is turned off."""
    if cfg.ease_per_user == 0:
        return None
    scope = ease_scope(
        events,
        as_of,
        memory_mib=cfg.ease_memory_mib,
        max_items=cfg.ease_max_items,
        select_days=cfg.ease_select_days,
    )
    if report is not None:
        report.ease_items, report.catalog_items = scope.n_items, scope.bought
        if scope.note is not None:
            report.notes["ease"] = scope.note
            log.warning(scope.note)
    return fit_ease(events, as_of, lam=cfg.ease_lambda, scope=scope)


EASE_SCHEMA = {USER_ID: pl.Utf8, ITEM_ID: pl.Utf8, "ease_score": pl.Float64, "ease_rank": pl.Int64}
# Customers scored per part of `write_ease_lists`: about 150 candidate rows each.
EASE_LIST_USERS = 10_000


@dataclass(frozen=True)
class EaseLists:
    """EASE's candidates of every customer, scored once under one fit and kept as Parquet
    parts (`write_ease_lists`). A shard reads its customers' rows instead of holding the
    N x N weights, so its memory does not grow with the catalog."""

    folder: Path

    def for_users(self, users: pl.Series) -> pl.DataFrame:
        return (
            pl.scan_parquet(self.folder / "*.parquet")
            .filter(pl.col(USER_ID).is_in(users.implode()))
            .collect()
            .cast(EASE_SCHEMA)
        )


def ease_candidates(
    events: pl.DataFrame,
    users: pl.Series,
    as_of: dt.datetime,
    cfg: CandidateSettings,
    fit: EaseFit | EaseLists | None,
) -> pl.DataFrame:
    """user_id, item_id, ease_score, ease_rank: EASE's best items per user (positive scores
    only), under a fit from `fit_ease_source` (or read from the lists written under one)."""
    if fit is None or users.len() == 0:
        return pl.DataFrame(schema=EASE_SCHEMA)
    if isinstance(fit, EaseLists):
        return fit.for_users(users)
    top = ease_top_items(fit, events, users, as_of, cfg.ease_per_user)
    scored = top.select(USER_ID, ITEM_ID, pl.col(SCORE).alias("ease_score"))
    return _ranked(scored, "ease_score", "ease_rank", cfg.ease_per_user).cast(EASE_SCHEMA)


def write_ease_lists(
    fit: EaseFit,
    events: pl.DataFrame,
    users: pl.Series,
    as_of: dt.datetime,
    cfg: CandidateSettings,
    folder: Path,
) -> EaseLists:
    """`users`' EASE candidates under `fit`, written to `folder` a part of EASE_LIST_USERS
    customers at a time. A customer's candidates depend on their own purchases alone (the
    sparse rows times the weights), so each equals what `ease_candidates` gives for any set
    of customers holding them. `events` need hold only purchases."""
    folder.mkdir(parents=True, exist_ok=True)
    ordered = users.unique().sort()
    starts = range(0, max(ordered.len(), 1), EASE_LIST_USERS)
    for part, start in enumerate(starts):
        chunk = ordered.slice(start, EASE_LIST_USERS)
        ease_candidates(events, chunk, as_of, cfg, fit).write_parquet(
            folder / f"part-{part:05d}.parquet"
        )
    return EaseLists(folder)


@dataclass(frozen=True)
class SharedCandidates:
    """What every customer's candidates share at one as-of, computed once from all events:
    then any shard of customers gets exactly its rows of the whole (`generate_candidates`)."""

    popular: pl.DataFrame
    neighbors: pl.DataFrame
    ease: EaseFit | EaseLists | None


def shared_candidates(
    events: pl.DataFrame,
    as_of: dt.datetime,
    cfg: CandidateSettings,
    report: CandidateReport | None = None,
) -> SharedCandidates:
    purchases = events.filter((pl.col(EVENT_TYPE) == PURCHASE) & (pl.col(TS) < as_of))
    return SharedCandidates(
        popular=popular_items(events, as_of, cfg.popular_days, cfg.popular_per_user),
        neighbors=item_neighbors(purchases, as_of, cfg),
        ease=fit_ease_source(events, as_of, cfg, report),
    )


def popular_items(events: pl.DataFrame, as_of: dt.datetime, days: int, n: int) -> pl.DataFrame:
    """item_id, pop_score (distinct buyers in the last `days` days), pop_rank; ties by item_id."""
    window = events.filter(
        (pl.col(EVENT_TYPE) == PURCHASE)
        & (pl.col(TS) < as_of)
        & (pl.col(TS) >= as_of - dt.timedelta(days=days))
    )
    return (
        window.group_by(ITEM_ID)
        .agg(pl.col(USER_ID).n_unique().cast(pl.Float64).alias("pop_score"))
        .sort(["pop_score", ITEM_ID], descending=[True, False])
        .head(n)
        .with_columns(pl.int_range(1, pl.len() + 1).alias("pop_rank"))
    )


def merged_order(cfg: CandidateSettings) -> pl.Expr:
    """Weighted reciprocal-rank fusion: sum over sources of weight / (rrf_k + rank)."""
    weights = cfg.merge_weights()
    return pl.sum_horizontal(
        [
            pl.when(pl.col(f"{s}_rank") < MISSING_RANK)
            .then(weights[s] / (cfg.rrf_k + pl.col(f"{s}_rank").cast(pl.Float64)))
            .otherwise(0.0)
            for s in SOURCES
        ]
    )


def generate_candidates(
    events: pl.DataFrame,
    users: pl.Series,
    as_of: dt.datetime,
    cfg: CandidateSettings,
    report: CandidateReport | None = None,
    shared: SharedCandidates | None = None,
    anchors: bool = False,
) -> pl.DataFrame:
    """The union of all sources for `users`, one row per (user, item), with every source's
    score (0 when absent) and rank (MISSING_RANK when absent), n_sources, and merged_rank
    (1 = best by weighted reciprocal-rank fusion); at most `max_per_user` rows per user.
    `report` (when given) receives a note per source that had to degrade. With `shared`
    (from every customer's events), `events` need only hold `users`' own events. With
    `anchors` (scoring, for the explanations), also COVIS_ANCHOR: the customer's item a
    co-purchase candidate was bought together with (null for other candidates)."""
    if shared is None:
        shared = shared_candidates(events, as_of, cfg, report)
    user_frame = pl.DataFrame({USER_ID: users.unique()})
    user_ids = user_frame.get_column(USER_ID)
    parts = [
        history_candidates(events, as_of, cfg).join(user_frame, on=USER_ID, how="semi"),
        copurchase_candidates(events, as_of, cfg, user_ids, shared.neighbors, anchors),
        ease_candidates(events, user_ids, as_of, cfg, shared.ease),
        user_frame.join(shared.popular, how="cross"),
    ]
    keys = pl.concat([p.select(USER_ID, ITEM_ID) for p in parts]).unique()
    merged = keys
    for part in parts:
        merged = merged.join(part, on=[USER_ID, ITEM_ID], how="left")
    fills = []
    for source in SOURCES:
        fills.append(pl.col(f"{source}_score").fill_null(0.0))
        fills.append(pl.col(f"{source}_rank").fill_null(MISSING_RANK).cast(pl.Int32))
    n_sources = pl.sum_horizontal(
        [(pl.col(f"{s}_rank") < MISSING_RANK).cast(pl.Int8) for s in SOURCES]
    ).alias("n_sources")
    filled = merged.with_columns(fills).with_columns(n_sources)
    return (
        filled.with_columns(merged_order(cfg).alias("_fused"))
        .sort([USER_ID, "_fused", ITEM_ID], descending=[False, True, False])
        .with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(USER_ID).alias(MERGED_RANK)
        )
        .filter(pl.col(MERGED_RANK) <= cfg.max_per_user)
        .drop("_fused")
        .sort(USER_ID, ITEM_ID)
    )
