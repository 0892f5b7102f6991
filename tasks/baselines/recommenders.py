"""Baseline recommenders quoted beside every model (baselines.md, DESIGN.md "Evaluation").

Each baseline is `(train_events, users, as_of, k) -> recs` with columns user_id, item_id,
rank (1..k, Int32) and score (Float64). They use purchase events before `as_of` only.
Every user gets exactly k distinct items whenever k items have ever been purchased: a
model's own candidates (items it scores above zero) come first, and the rest of the list
is padded with the popularity ranking. Padded items carry the score -position in that
ranking, so scores always decrease with rank and padding is easy to spot.
Repeat purchases are allowed (the protocol counts them as real demand), so no baseline
removes a user's past items.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import scipy.sparse as sp

from tasks.constants import EVENT_TYPE, ITEM_ID, PURCHASE, QUANTITY, RANK, SCORE, TS, USER_ID

POPULARITY_WINDOW_DAYS = 30
# Chosen on validation folds before each development cut, never on a cut: both cuts' folds
# put it at 180 (benchmarks/results/default_provenance.md; it was 70, chosen on the cuts).
REPURCHASE_TAU_DAYS = 180.0
EASE_LAMBDA = 200.0
# EASE's dense item x item matrices: the Gram matrix, LAPACK's working copy of it and the
# inverse live at once (B then overwrites the inverse), 3 x N^2 float64. 512 MiB admits
# 4,729 items, Online Retail's ~3.7k whole; the inverse's time grows as N^3 (about 6 s of
# CPU at 4.7k items, 18 s at 6.7k, and a retraining day fits EASE five times).
EASE_MEMORY_MIB = 512
_EASE_COPIES = 3
# When EASE is capped it keeps the items with most distinct buyers in this window.
EASE_SELECT_DAYS = 90
# Item-kNN's sparse similarity: when an upper bound on its non-zeros (sum over users of
# their distinct items squared) is above this, it works on the most-bought items only.
KNN_MAX_PAIRS = 50_000_000
# Users scored per dense block in kNN / EASE: bounds memory at block x n_items floats,
# and the block shrinks on large catalogs so scores and their sort stay near this size.
_USER_BLOCK = 2048
_SCORE_BLOCK_BYTES = 256 * 2**20

log = logging.getLogger("nightrec.candidates")

ScoreBlock = Callable[[sp.csr_matrix], np.ndarray]

_POP_POS = "_pop_pos"
_SRC = "_src"
_ORDER = "_order"


def _purchases(train_events: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Purchase events strictly before `as_of`: the guard against look-ahead lives here too."""
    return train_events.filter((pl.col(EVENT_TYPE) == PURCHASE) & (pl.col(TS) < as_of)).select(
        USER_ID, ITEM_ID, TS, QUANTITY
    )


def _users_frame(users: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({USER_ID: users}).unique().sort(USER_ID)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _popularity_ranking(
    purchases: pl.DataFrame, as_of: datetime, window_days: int = POPULARITY_WINDOW_DAYS
) -> pl.DataFrame:
    """Every purchased item, most popular first: item_id, score, _pop_pos (1-based).

    Order: distinct buyers in [as_of - window, as_of), then all-time distinct buyers, then
    item_id. The all-time key breaks ties between equally recent best-sellers (it is what
    reproduces baselines.md on the 2011-08-01 cut) and orders the items nobody bought in
    the window, so the ranking can pad any list.
    """
    start = as_of - timedelta(days=window_days)
    return (
        purchases.group_by(ITEM_ID)
        .agg(
            pl.col(USER_ID).filter(pl.col(TS) >= start).n_unique().alias("_recent"),
            pl.col(USER_ID).n_unique().alias("_all"),
        )
        .sort(["_recent", "_all", ITEM_ID], descending=[True, True, False])
        .with_columns(
            pl.col("_recent").cast(pl.Float64).alias(SCORE),
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(_POP_POS),
        )
        .select(ITEM_ID, SCORE, _POP_POS)
    )


def _empty_recs() -> pl.DataFrame:
    return pl.DataFrame(
        schema={USER_ID: pl.Utf8, ITEM_ID: pl.Utf8, RANK: pl.Int32, SCORE: pl.Float64}
    )


def _assemble(
    candidates: pl.DataFrame, users: pl.DataFrame, popular: pl.DataFrame, k: int
) -> pl.DataFrame:
    """A model's first k candidates with score > 0 per user, padded with popular items.

    `candidates` has user_id, item_id, score and _order (the model's preference, 1 = best,
    ties already broken); padding skips items the user already holds.
    """
    own = (
        candidates.join(users, on=USER_ID, how="semi")
        .filter(pl.col(SCORE) > 0)
        .sort(USER_ID, _ORDER)
        .group_by(USER_ID, maintain_order=True)
        .head(k)
        .select(
            USER_ID, ITEM_ID, SCORE, pl.lit(0, pl.Int64).alias(_SRC), pl.col(_ORDER).cast(pl.Int64)
        )
    )
    # a user holds at most k own items, so 2k popular ones always leave k to pad with
    pad = (
        users.join(popular.head(2 * k), how="cross")
        .join(own, on=[USER_ID, ITEM_ID], how="anti")
        .select(
            USER_ID,
            ITEM_ID,
            (-pl.col(_POP_POS).cast(pl.Float64)).alias(SCORE),
            pl.lit(1, pl.Int64).alias(_SRC),
            pl.col(_POP_POS).alias(_ORDER),
        )
    )
    return (
        pl.concat([own, pad])
        .sort(USER_ID, _SRC, _ORDER)
        .group_by(USER_ID, maintain_order=True)
        .head(k)
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(USER_ID).alias(RANK))
        .select(USER_ID, ITEM_ID, RANK, SCORE)
    )


def popularity(
    train_events: pl.DataFrame,
    users: pl.Series,
    as_of: datetime,
    k: int,
    *,
    window_days: int = POPULARITY_WINDOW_DAYS,
) -> pl.DataFrame:
    """The same list for everyone: items by distinct buyers in the last `window_days`.

    Distinct buyers, not units: wholesalers order thousands of one item, which says little
    about what the next customer wants. Score = buyers in the window.
    """
    _check_k(k)
    purchases = _purchases(train_events, as_of)
    top = _popularity_ranking(purchases, as_of, window_days).head(k)
    base = _users_frame(users)
    if base.height == 0 or top.height == 0:
        return _empty_recs()
    return (
        base.join(top, how="cross")
        .sort([USER_ID, _POP_POS])
        .select(USER_ID, ITEM_ID, pl.col(_POP_POS).cast(pl.Int32).alias(RANK), SCORE)
    )


def repurchase(
    train_events: pl.DataFrame,
    users: pl.Series,
    as_of: datetime,
    k: int,
    *,
    tau: float = REPURCHASE_TAU_DAYS,
) -> pl.DataFrame:
    """The user's own past items by recency-weighted frequency, padded with popularity.

    score = sum over the user's purchase lines of the item of exp(-age_days / tau): many
    customers are wholesalers who re-order, and recent orders say more than old ones.
    Items bought together in one order tie exactly (for most users at the k-th place), so
    the tie-break matters: more units bought first, then item_id.
    """
    _check_k(k)
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    purchases = _purchases(train_events, as_of)
    base = _users_frame(users)
    age_days = (pl.lit(as_of) - pl.col(TS)).dt.total_microseconds() / 86_400e6
    candidates = (
        purchases.join(base, on=USER_ID, how="semi")
        .group_by(USER_ID, ITEM_ID)
        .agg(
            (-age_days / tau).exp().sum().alias(SCORE),
            pl.col(QUANTITY).sum().alias("_units"),
        )
        .sort([USER_ID, SCORE, "_units", ITEM_ID], descending=[False, True, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(USER_ID).alias(_ORDER))
    )
    return _assemble(candidates, base, _popularity_ranking(purchases, as_of), k)


def _interactions(
    purchases: pl.DataFrame,
) -> tuple[sp.csr_matrix, pl.DataFrame, pl.Series]:
    """Binary user x item matrix, its user index (user_id, _row) and its items in column order."""
    pairs = purchases.select(USER_ID, ITEM_ID).unique()
    user_index = (
        pairs.select(USER_ID).unique().sort(USER_ID).with_row_index("_row").select(USER_ID, "_row")
    )
    items = pairs.get_column(ITEM_ID).unique().sort()
    return _binary_matrix(pairs, user_index, items), user_index, items


def _binary_matrix(
    pairs: pl.DataFrame, user_index: pl.DataFrame, items: pl.Series
) -> sp.csr_matrix:
    """1 where a (user, item) pair was bought: rows by `user_index` (user_id, _row), columns
    in the order of `items`."""
    item_index = pl.DataFrame({ITEM_ID: items}).with_row_index("_col")
    coded = pairs.join(user_index, on=USER_ID).join(item_index, on=ITEM_ID)
    return sp.csr_matrix(
        (
            np.ones(coded.height, dtype=np.float64),
            (coded.get_column("_row").to_numpy(), coded.get_column("_col").to_numpy()),
        ),
        shape=(user_index.height, items.len()),
    )


def _user_block(n_items: int) -> int:
    """Users per scoring block: the dense scores (float64) and their argsort (int64) of a
    block take about _SCORE_BLOCK_BYTES; never more than _USER_BLOCK users."""
    return max(1, min(_USER_BLOCK, _SCORE_BLOCK_BYTES // (16 * max(n_items, 1))))


def _best_columns(scores: np.ndarray, top: int) -> np.ndarray:
    """Each row's `top` best columns, best first, equal scores in column order: what a stable
    argsort of -scores gives in its first `top` columns, without sorting whole rows.

    A partition finds each row's top-th best score v; every column above v is kept, and of
    the columns equal to v the first ones in column order, as many as are still missing.
    Only those `top` per row are sorted: 2.5x faster than the full sort at 4,729 items and 150
    per customer (benchmarks/topk_columns.py), EASE's candidates for a 10M-event shop."""
    if top == 0 or top >= scores.shape[1] or np.isnan(scores).any():  # NaN: argsort's order
        return np.argsort(-scores, axis=1, kind="stable")[:, :top]
    negated = np.negative(scores)
    negated.partition(top - 1, axis=1)  # in place: one temporary the size of the scores
    threshold = -negated[:, top - 1 : top]
    del negated
    above = scores > threshold
    at = scores == threshold
    missing = top - above.sum(axis=1, keepdims=True)
    keep = above | (at & (np.cumsum(at, axis=1, dtype=np.int32) <= missing))
    row, col = np.nonzero(keep)  # `top` per row, in column order
    order = np.lexsort((col, -scores[row, col], row))
    return col[order].reshape(scores.shape[0], top)


def _top_k_blocks(
    x: sp.csr_matrix, rows: np.ndarray, k: int, score_block: ScoreBlock
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, score) of each user's k best columns, scored a block of users at a time.

    Equal scores keep column order, i.e. ties go by item_id. Rows are scored independently,
    so the block size never changes a result.
    """
    top = min(k, x.shape[1])
    block = _user_block(x.shape[1])
    row_parts, col_parts, val_parts = [], [], []
    for start in range(0, rows.size, block):
        block_rows = rows[start : start + block]
        scores = np.asarray(score_block(x[block_rows]), dtype=np.float64)
        cols = _best_columns(scores, top)
        row_parts.append(np.repeat(block_rows, top))
        col_parts.append(cols.ravel())
        val_parts.append(np.take_along_axis(scores, cols, axis=1).ravel())
    if not row_parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    return np.concatenate(row_parts), np.concatenate(col_parts), np.concatenate(val_parts)


def _matrix_model_recs(
    purchases: pl.DataFrame,
    base: pl.DataFrame,
    as_of: datetime,
    k: int,
    fit: Callable[[sp.csr_matrix], ScoreBlock],
    fit_purchases: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Shared frame work of the user x item models: index, fit, score known users, pad.

    `fit_purchases` (default: `purchases`) is what the model is fit and scores on, when it
    works on a subset of the items; the padding always ranks every purchased item."""
    x, user_index, items = _interactions(purchases if fit_purchases is None else fit_purchases)
    rows = user_index.join(base, on=USER_ID, how="semi").get_column("_row").to_numpy()
    popular = _popularity_ranking(purchases, as_of)
    if rows.size == 0:
        candidates = pl.DataFrame(
            schema={USER_ID: pl.Utf8, ITEM_ID: pl.Utf8, SCORE: pl.Float64, _ORDER: pl.Int64}
        )
        return _assemble(candidates, base, popular, k)
    row_ids, col_ids, vals = _top_k_blocks(x, rows, k, fit(x))
    candidates = pl.DataFrame(
        {
            USER_ID: user_index.get_column(USER_ID).gather(row_ids),
            ITEM_ID: items.gather(col_ids),
            SCORE: vals,
        }
    ).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(USER_ID).alias(_ORDER))
    return _assemble(candidates, base, popular, k)


def most_bought_items(
    purchases: pl.DataFrame, as_of: datetime, n: int, window_days: int
) -> pl.Series:
    """The `n` items with most distinct buyers in [as_of - window_days, as_of); ties by
    all-time distinct buyers, then item_id (the popularity ranking's order)."""
    return _popularity_ranking(purchases, as_of, window_days).head(n).get_column(ITEM_ID)


def ease_item_budget(memory_mib: int, max_items: int = 0) -> int:
    """The most items EASE may work on: 3 dense N x N float64 matrices within `memory_mib`,
    and at most `max_items` when that is positive."""
    n = math.isqrt(memory_mib * 2**20 // (_EASE_COPIES * 8))
    return max(1, min(n, max_items) if max_items > 0 else n)


def _dense_gram(x: sp.csr_matrix) -> np.ndarray:
    """X'X as a dense float64 matrix, summed over blocks of users: never the sparse product,
    whose indices can outweigh the dense matrix. X is binary, so every entry is a count and
    the sum is exact in any order."""
    n_items = x.shape[1]
    gram = np.zeros((n_items, n_items), dtype=np.float64)
    block = max(1, _SCORE_BLOCK_BYTES // (4 * 8 * max(n_items, 1)))
    for start in range(0, x.shape[0], block):
        part = x[start : start + block]
        gram += np.asarray(part.T @ part.toarray())
    return gram


@dataclass(frozen=True)
class EaseScope:
    """The items EASE works on as of a moment, and why."""

    items: pl.Series | None  # None: every purchased item
    bought: int  # distinct items purchased before as_of
    limit: int  # the most items the budget admits
    memory_mib: int

    @property
    def n_items(self) -> int:
        return self.bought if self.items is None else self.items.len()

    @property
    def note(self) -> str | None:
        """A line for the run's manifest when EASE is bounded, None when it is whole."""
        if self.items is None:
            return None
        return (
            f"EASE on the {self.n_items} most-bought of {self.bought} items "
            f"(budget {self.memory_mib} MiB)"
        )


def ease_scope(
    train_events: pl.DataFrame,
    as_of: datetime,
    *,
    memory_mib: int = EASE_MEMORY_MIB,
    max_items: int = 0,
    select_days: int = EASE_SELECT_DAYS,
) -> EaseScope:
    """Every purchased item when they fit the budget; otherwise the most-bought ones."""
    purchases = _purchases(train_events, as_of)
    bought = purchases.get_column(ITEM_ID).n_unique()
    limit = ease_item_budget(memory_mib, max_items)
    if bought <= limit:
        return EaseScope(None, bought, limit, memory_mib)
    items = most_bought_items(purchases, as_of, limit, select_days).sort()
    return EaseScope(items, bought, limit, memory_mib)


def _pairs_bound(purchases: pl.DataFrame) -> int:
    """An upper bound on the non-zeros of X'X: the sum over users of distinct items squared."""
    per_user = purchases.select(USER_ID, ITEM_ID).unique().group_by(USER_ID).len()
    return int((per_user.get_column("len").cast(pl.Int64) ** 2).sum())


def _knn_purchases(purchases: pl.DataFrame, as_of: datetime, max_pairs: int) -> pl.DataFrame:
    """Purchases of the most-bought items, halving their number until the similarity's
    non-zero bound is at most `max_pairs`; all of them when it already is."""
    if _pairs_bound(purchases) <= max_pairs:
        return purchases
    ranking = _popularity_ranking(purchases, as_of, EASE_SELECT_DAYS).get_column(ITEM_ID)
    n = ranking.len()
    kept = purchases
    while n > 1:
        n //= 2
        kept = purchases.filter(pl.col(ITEM_ID).is_in(ranking.head(n).implode()))
        if _pairs_bound(kept) <= max_pairs:
            break
    log.warning(
        "item-kNN on the %d most-bought of %d items (at most %d similarity pairs)",
        n,
        ranking.len(),
        max_pairs,
    )
    return kept


def _fit_item_knn(x: sp.csr_matrix) -> ScoreBlock:
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    xn = x @ sp.diags(inv)
    sim = (xn.T @ xn).tocsr()
    sim = (sim - sp.diags(sim.diagonal())).tocsr()
    sim.eliminate_zeros()

    def score_block(block: sp.csr_matrix) -> np.ndarray:
        return (block @ sim).toarray()

    return score_block


def item_knn(
    train_events: pl.DataFrame,
    users: pl.Series,
    as_of: datetime,
    k: int,
    *,
    max_pairs: int = KNN_MAX_PAIRS,
) -> pl.DataFrame:
    """Item-kNN: score = sum of cosine similarities between an item and the user's items.

    Cosine on the binary user x item matrix, self-similarity zero (an item does not vote for
    itself; that is what reproduces baselines.md). Past items are not excluded: they still
    score through the items bought with them, and repeats are real demand. On a catalog whose
    similarity could exceed `max_pairs` non-zeros it works on the most-bought items (logged).
    """
    _check_k(k)
    purchases = _purchases(train_events, as_of)
    kept = _knn_purchases(purchases, as_of, max_pairs)
    return _matrix_model_recs(purchases, _users_frame(users), as_of, k, _fit_item_knn, kept)


def ease(
    train_events: pl.DataFrame,
    users: pl.Series,
    as_of: datetime,
    k: int,
    *,
    lam: float = EASE_LAMBDA,
    memory_mib: int = EASE_MEMORY_MIB,
    max_items: int = 0,
    select_days: int = EASE_SELECT_DAYS,
    scope: EaseScope | None = None,
) -> pl.DataFrame:
    """EASE (Steck 2019): B = -P / diag(P) with P = (X'X + lam I)^-1, diagonal zero.

    Closed form with a dense item x item inverse, so its memory grows with the square of the
    items: it works on every purchased item when 3 N^2 float64 fit in `memory_mib` (and N is
    at most `max_items`, when positive), otherwise on the N items with most distinct buyers in
    the last `select_days` (logged; `ease_scope` says which). Users are padded with the
    popularity ranking of every item. `scope` reuses an `ease_scope` already computed.
    """
    _check_k(k)
    if lam <= 0:
        raise ValueError(f"lam must be positive, got {lam}")
    if scope is None:
        scope = ease_scope(
            train_events,
            as_of,
            memory_mib=memory_mib,
            max_items=max_items,
            select_days=select_days,
        )
    if scope.note is not None:
        log.warning(scope.note)

    def fit(x: sp.csr_matrix) -> ScoreBlock:
        b = _ease_weights(x, lam)

        def score_block(block: sp.csr_matrix) -> np.ndarray:
            return np.asarray(block @ b)

        return score_block

    purchases = _purchases(train_events, as_of)
    kept = _in_scope(purchases, scope)
    return _matrix_model_recs(purchases, _users_frame(users), as_of, k, fit, kept)


def _in_scope(purchases: pl.DataFrame, scope: EaseScope) -> pl.DataFrame:
    if scope.items is None:
        return purchases
    return purchases.filter(pl.col(ITEM_ID).is_in(scope.items.implode()))


def _ease_weights(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """B = -P / diag(P) with P = (X'X + lam I)^-1 and a zero diagonal."""
    gram = _dense_gram(x)
    gram[np.diag_indices_from(gram)] += lam
    b = np.linalg.inv(gram)
    del gram
    # in place: the same arithmetic as p / -diag(p), without a fourth N x N matrix
    b /= -np.diag(b).copy()[np.newaxis, :]
    b[np.diag_indices_from(b)] = 0.0
    return b


@dataclass(frozen=True)
class EaseFit:
    """EASE's item x item weights, fit on every customer's purchases at one as-of, so that
    customers can then be scored a shard at a time (`ease_top_items`)."""

    items: pl.Series  # the weights' column order (sorted item ids)
    weights: np.ndarray


def fit_ease(
    train_events: pl.DataFrame, as_of: datetime, *, lam: float, scope: EaseScope
) -> EaseFit:
    if lam <= 0:
        raise ValueError(f"lam must be positive, got {lam}")
    x, _, items = _interactions(_in_scope(_purchases(train_events, as_of), scope))
    return EaseFit(items, _ease_weights(x, lam))


def ease_top_items(
    fit: EaseFit, train_events: pl.DataFrame, users: pl.Series, as_of: datetime, k: int
) -> pl.DataFrame:
    """user_id, item_id, score: each of `users`' k best items under `fit` (ties by item_id),
    positive scores only. A customer's row of X, hence their scores, depends on their own
    purchases alone, so any shard of customers gets exactly their rows of the whole."""
    _check_k(k)
    purchases = _purchases(train_events, as_of).filter(
        pl.col(USER_ID).is_in(users.implode()) & pl.col(ITEM_ID).is_in(fit.items.implode())
    )
    pairs = purchases.select(USER_ID, ITEM_ID).unique()
    user_index = pairs.select(USER_ID).unique().sort(USER_ID).with_row_index("_row")
    x = _binary_matrix(pairs, user_index, fit.items)
    rows = np.arange(user_index.height)
    row_ids, col_ids, vals = _top_k_blocks(x, rows, k, lambda block: block @ fit.weights)
    return pl.DataFrame(
        {
            USER_ID: user_index.get_column(USER_ID).gather(row_ids),
            ITEM_ID: fit.items.gather(col_ids),
            SCORE: vals,
        },
        schema={USER_ID: pl.Utf8, ITEM_ID: pl.Utf8, SCORE: pl.Float64},
    ).filter(pl.col(SCORE) > 0)
