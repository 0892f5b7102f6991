"""Why each published row was recommended: a reason code, a sentence, and the model's top
feature contributions.

A pure function of one frame of scored top-K rows, the candidates (with features) they were
chosen from, and the model, so it runs the same on the whole run or on one shard of customers:

- `reason`: the candidate source that contributed most to the row's place in the merged
  candidate list (the weighted reciprocal-rank fusion term, weight / (rrf_k + rank), of
  tasks/candidates/generate.py), mapped to a code: hist -> repurchase (or viewed, when the
  customer never bought the item), covis -> bought-together, ease -> similar-item, pop ->
  popular-in-category (the item's category holds at least CATEGORY_SHARE of the customer's
  purchases), trending (this week's buyers run at TRENDING_PACE times the 30-day pace or more)
  or popular. Rows padded from the popularity list are `fallback`; rows of the repurchase
  baseline (no model served) are `repurchase`.
- `reason_detail`: a sentence from the same source and the features ("bought 3 times, about
  every 21 days, last 5 days ago", "often bought together with 85123A, which you bought").
  It quotes the customer's own history and an item's popularity rank, never a count of other
  customers.
- `reason_features`: the `top_features` largest LightGBM contributions (in the model's raw
  score units) as "name:+0.412;name:-0.108", computed for the published model rows only,
  never for all candidates. `explain.method` path (default): each split on the row's path in
  every tree credits its feature with the change of the expected score (`path_table`), about
  the cost of scoring; shap: LightGBM's `pred_contrib=True` (exact Shapley values, about 9 ms
  a row for the Online Retail model, so several times a whole scoring day). Both add up to
  the raw score less the model's expected score. The blend's LightGBM part explains blend
  rows; a neural model has no contributions (null), its rows keep the source reason and
  detail.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from tasks.candidates.generate import COVIS_ANCHOR, MISSING_RANK, SOURCES
from tasks.constants import (
    BOUGHT_TOGETHER,
    FALLBACK,
    ITEM_ID,
    POPULAR,
    POPULAR_IN_CATEGORY,
    REASON,
    REASON_DETAIL,
    REASON_FEATURES,
    REC_SOURCE,
    REPURCHASE,
    SIMILAR_ITEM,
    TRENDING,
    USER_ID,
    VIEWED,
)
from tasks.settings import CandidateSettings, ExplainSettings

MODEL_SOURCE = "model"  # tasks.rank.topk.MODEL_SOURCE (rank sits above this stage)
CATEGORY_SHARE = 0.2
TRENDING_PACE = 1.5
# The columns an explanation reads from the candidate frame (absent ones read as null).
DETAIL_COLUMNS = (
    COVIS_ANCHOR,
    "ui_orders",
    "ui_cadence",
    "ui_days_since_last",
    "ui_views_30d",
    "ui_carts_30d",
    "uc_share",
    "i_trend",
)
_BEST = "_best_source"


@dataclass(frozen=True)
class Contributions:
    """A LightGBM booster (anything with `predict(matrix, pred_contrib=True)`) and its
    feature names, in the model's order."""

    booster: Any
    features: list[str]


def contribution_model(scorer: Any) -> Contributions | None:
    """The LightGBM part of a scorer: its booster (lightgbm), the blend's booster (blend);
    None for a scorer without one (neural)."""
    booster = getattr(scorer, "booster", None)
    if booster is not None:
        return Contributions(booster, list(scorer.features))
    inner = getattr(scorer, "lightgbm", None)
    return contribution_model(inner) if inner is not None else None


_TABLES: weakref.WeakKeyDictionary[Any, tuple[sp.csr_matrix, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def cached_path_table(booster: Any) -> tuple[sp.csr_matrix, np.ndarray]:
    """path_table, built once per booster (each shard of a run reuses it)."""
    if booster not in _TABLES:
        _TABLES[booster] = path_table(booster)
    return _TABLES[booster]


def path_table(booster: Any) -> tuple[sp.csr_matrix, np.ndarray]:
    """What each leaf of each tree credits to each feature, from the model's own dump.

    Walking from a tree's root to a leaf, every split moves the expected score from the
    node's value to its child's (LightGBM keeps `internal_value`, the node's mean output, for
    every split): the difference goes to the split's feature (Saabas' attribution). A leaf's
    credits add up to leaf value less root value, so a row's credits over all trees add up to
    its raw score less the sum of the roots' values, as Shapley values do.

    Returns (table, offsets): row offsets[t] + leaf of the sparse table holds tree t's leaf."""
    dump = booster.dump_model()
    n_features = len(dump["feature_names"])
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    offsets = []
    base = 0
    for tree in dump["tree_info"]:
        offsets.append(base)
        stack = [(tree["tree_structure"], {})]
        while stack:
            node, credit = stack.pop()
            if "split_feature" not in node:  # a leaf
                for feature, value in credit.items():
                    rows.append(base + node.get("leaf_index", 0))
                    cols.append(feature)
                    vals.append(value)
                continue
            here, feature = node["internal_value"], node["split_feature"]
            for child in (node["left_child"], node["right_child"]):
                value = child["internal_value"] if "split_feature" in child else child["leaf_value"]
                stack.append((child, {**credit, feature: credit.get(feature, 0.0) + value - here}))
        base += tree["num_leaves"]
    table = sp.csr_matrix((vals, (rows, cols)), shape=(base, n_features), dtype=np.float64)
    return table, np.asarray(offsets, dtype=np.int64)


def contribution_matrix(model: Contributions, matrix: np.ndarray, method: str) -> np.ndarray:
    """(rows, features) contributions of each feature to each row's raw score."""
    if method == "shap":
        return np.asarray(model.booster.predict(matrix, pred_contrib=True))[:, :-1]  # no bias
    table, offsets = cached_path_table(model.booster)
    leaves = np.asarray(model.booster.predict(matrix, pred_leaf=True), dtype=np.int64)
    leaves = leaves.reshape(matrix.shape[0], -1)
    if leaves.shape[1] != offsets.size:
        raise ValueError(f"{leaves.shape[1]} trees scored, {offsets.size} dumped")
    n, trees = leaves.shape
    onehot = sp.csr_matrix(
        (np.ones(n * trees), (leaves + offsets).ravel(), np.arange(0, n * trees + 1, trees)),
        shape=(n, table.shape[0]),
    )
    return (onehot @ table).toarray()


def top_contributions(
    model: Contributions, rows: pl.DataFrame, n: int, method: str = "path"
) -> pl.Series:
    """One string per row: the `n` features with the largest |contribution| (ties: model
    order), "name:+0.412;name:-0.108". The matrix is float32 as the scorer sees it."""
    if rows.height == 0:
        return pl.Series(REASON_FEATURES, [], dtype=pl.Utf8)
    matrix = rows.select(pl.col(model.features).cast(pl.Float32)).to_numpy()
    contrib = contribution_matrix(model, matrix, method)
    n = min(n, contrib.shape[1])
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :n]
    names = model.features
    return pl.Series(
        REASON_FEATURES,
        [
            ";".join(f"{names[j]}:{contrib[i, j]:+.3f}" for j in order[i])
            for i in range(contrib.shape[0])
        ],
        dtype=pl.Utf8,
    )


def _with_columns_of(
    rows: pl.DataFrame, candidates: pl.DataFrame | None, needed: list[str]
) -> pl.DataFrame:
    """`rows` joined to the candidates' `needed` columns; absent columns are null."""
    needed = list(dict.fromkeys(needed))
    present = [] if candidates is None else [c for c in needed if c in candidates.columns]
    if candidates is not None:
        rows = rows.join(
            candidates.select(USER_ID, ITEM_ID, *present), on=[USER_ID, ITEM_ID], how="left"
        )
    return rows.with_columns(
        pl.lit(None, dtype=pl.Utf8 if c == COVIS_ANCHOR else pl.Float64).alias(c)
        for c in needed
        if c not in present
    )


def _best_source(cfg: CandidateSettings) -> pl.Expr:
    """The source whose fusion term weight / (rrf_k + rank) is largest (ties: SOURCES order);
    null when the row is in no source."""
    weights = cfg.merge_weights()
    terms = [
        pl.when(pl.col(f"{s}_rank").is_not_null() & (pl.col(f"{s}_rank") < MISSING_RANK))
        .then(weights[s] / (cfg.rrf_k + pl.col(f"{s}_rank").cast(pl.Float64)))
        .otherwise(-1.0)
        for s in SOURCES
    ]
    best = pl.max_horizontal(terms)
    expr = pl.lit(None, dtype=pl.Utf8)
    for source, term in reversed(list(zip(SOURCES, terms, strict=True))):
        expr = pl.when((term == best) & (best >= 0)).then(pl.lit(source)).otherwise(expr)
    return expr


def _times(column: str) -> pl.Expr:
    n = pl.col(column).cast(pl.Int64)
    return pl.when(n == 1).then(pl.lit("once")).otherwise(pl.format("{} times", n))


def _days(column: str) -> pl.Expr:
    return pl.col(column).round(0).cast(pl.Int64)


def _model_reasons(cfg: CandidateSettings) -> tuple[pl.Expr, pl.Expr]:
    """(reason, reason_detail) of model rows from the best source and the features."""
    best = pl.col(_BEST)
    bought = pl.col("ui_orders").fill_null(0) > 0
    share = pl.col("uc_share").fill_null(0.0)
    trend = pl.col("i_trend").fill_null(0.0)
    reason = (
        pl.when((best == "hist") & bought)
        .then(pl.lit(REPURCHASE))
        .when(best == "hist")
        .then(pl.lit(VIEWED))
        .when(best == "covis")
        .then(pl.lit(BOUGHT_TOGETHER))
        .when(best == "ease")
        .then(pl.lit(SIMILAR_ITEM))
        .when((best == "pop") & (share >= CATEGORY_SHARE))
        .then(pl.lit(POPULAR_IN_CATEGORY))
        .when((best == "pop") & (trend >= TRENDING_PACE))
        .then(pl.lit(TRENDING))
        .otherwise(pl.lit(POPULAR))
    )
    cadence = (
        pl.when((pl.col("ui_orders").fill_null(0) > 1) & pl.col("ui_cadence").is_not_null())
        .then(pl.format(", about every {} days", _days("ui_cadence")))
        .otherwise(pl.lit(""))
    )
    last = (
        pl.when(pl.col("ui_days_since_last").is_not_null())
        .then(pl.format(", last {} days ago", _days("ui_days_since_last")))
        .otherwise(pl.lit(""))
    )
    views = pl.col("ui_views_30d").fill_null(0)
    carts = pl.col("ui_carts_30d").fill_null(0)
    looked = (
        pl.when((views > 0) & (carts > 0))
        .then(
            pl.format(
                "viewed {} and put in the cart {} in the last 30 days",
                _times("ui_views_30d"),
                _times("ui_carts_30d"),
            )
        )
        .when(views > 0)
        .then(pl.format("viewed {} in the last 30 days", _times("ui_views_30d")))
        .when(carts > 0)
        .then(pl.format("put in the cart {} in the last 30 days", _times("ui_carts_30d")))
        .otherwise(pl.lit("you looked at it before"))
    )
    pop_rank = pl.col("pop_rank").cast(pl.Int64)
    days = cfg.popular_days
    popular_text = pl.format(f"#{{}} most bought in the last {days} days", pop_rank)
    share_text = pl.format("{}%", (share * 100).round(0).cast(pl.Int64))
    detail = (
        pl.when(pl.col(REASON) == REPURCHASE)
        .then(pl.format("bought {}{}{}", _times("ui_orders"), cadence, last))
        .when(pl.col(REASON) == VIEWED)
        .then(looked)
        .when((pl.col(REASON) == BOUGHT_TOGETHER) & pl.col(COVIS_ANCHOR).is_not_null())
        .then(pl.format("often bought together with {}, which you bought", pl.col(COVIS_ANCHOR)))
        .when(pl.col(REASON) == BOUGHT_TOGETHER)
        .then(pl.lit("often bought together with items you bought"))
        .when((pl.col(REASON) == SIMILAR_ITEM) & (share > 0))
        .then(
            pl.format(
                "customers who bought what you bought also buy it; its category is {} of "
                "your purchases",
                share_text,
            )
        )
        .when(pl.col(REASON) == SIMILAR_ITEM)
        .then(pl.lit("customers who bought what you bought also buy it"))
        .when(pl.col(REASON) == POPULAR_IN_CATEGORY)
        .then(pl.format("{}, in a category that is {} of your purchases", popular_text, share_text))
        .when(pl.col(REASON) == TRENDING)
        .then(pl.format("{}, and selling faster this week", popular_text))
        .when(pl.col("pop_rank").is_not_null() & (pl.col("pop_rank") < MISSING_RANK))
        .then(popular_text)
        .otherwise(pl.lit("ranked by the model among your candidates"))
    )
    return reason, detail


def explain_rows(
    recs: pl.DataFrame,
    candidates: pl.DataFrame | None,
    model: Contributions | None,
    candidate_cfg: CandidateSettings,
    cfg: ExplainSettings,
    fallback_detail: str,
    baseline_source: str | None = None,
) -> pl.DataFrame:
    """`recs` (user_id, item_id, rank, score, source: one frame of top-K rows) with `reason`,
    `reason_detail` and `reason_features` added, rows and order unchanged.

    `candidates`: the candidate frame (sources' ranks, features) the model rows were chosen
    from, None when no model scored; `model`: the contributions to compute for model rows
    (with `cfg.enabled`), None for none; `fallback_detail`: the sentence of rows padded from
    the popularity list; `baseline_source`: the source value of the repurchase baseline's rows
    (their reason is repurchase)."""
    needed = [f"{s}_rank" for s in SOURCES] + list(DETAIL_COLUMNS)
    if model is not None and cfg.enabled:
        needed += model.features
    ordered = recs.with_row_index("_pos")
    is_model = pl.col(REC_SOURCE) == MODEL_SOURCE
    model_rows = _with_columns_of(ordered.filter(is_model), candidates, needed)
    reason, detail = _model_reasons(candidate_cfg)
    model_rows = (
        model_rows.with_columns(_best_source(candidate_cfg).alias(_BEST))
        .with_columns(reason.alias(REASON))
        .with_columns(detail.alias(REASON_DETAIL))
    )
    if model is not None and cfg.enabled and candidates is not None:
        features = top_contributions(model, model_rows, cfg.top_features, cfg.method)
    else:
        features = pl.Series(REASON_FEATURES, [None] * model_rows.height, dtype=pl.Utf8)
    model_rows = model_rows.with_columns(features)
    is_baseline = pl.col(REC_SOURCE) == (baseline_source or "")
    other = ordered.filter(~is_model).with_columns(
        pl.when(is_baseline).then(pl.lit(REPURCHASE)).otherwise(pl.lit(FALLBACK)).alias(REASON),
        pl.when(is_baseline)
        .then(pl.lit("you bought it before (the repurchase baseline served: no model tonight)"))
        .otherwise(pl.lit(fallback_detail))
        .alias(REASON_DETAIL),
        pl.lit(None, dtype=pl.Utf8).alias(REASON_FEATURES),
    )
    columns = [*recs.columns, REASON, REASON_DETAIL, REASON_FEATURES]
    return (
        pl.concat([model_rows.select("_pos", *columns), other.select("_pos", *columns)])
        .sort("_pos")
        .drop("_pos")
    )


def fallback_sentence(k: int, model_served: bool, dp_epsilon: float | None) -> str:
    """The detail of rows padded from the popularity list."""
    why = (
        f"the model had fewer than {k} candidates for you"
        if model_served
        else "no model could serve tonight"
    )
    private = (
        "" if dp_epsilon is None else f" (differentially private counts, epsilon {dp_epsilon:g})"
    )
    return f"one of the most bought items lately{private}: {why}"
