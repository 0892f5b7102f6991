"""The published top-K contract: per-customer aggregates in Polars, then GE on both frames."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from tasks.constants import ITEM_ID, RANK, REASONS, SCORE, USER_ID
from tasks.validate.contracts import SuiteReport, check_frame

TABLE = "recommendations"
CATALOG_ITEM = "catalog_item_id"
KNOWN_USER = "known_user_id"


def per_customer(
    recs: pl.DataFrame, expected_rows: int, known_users: Iterable[str] = ()
) -> pl.DataFrame:
    """One row per customer with the counts the multi-row rules look at; a known customer
    without any row counts 0 rows (so a run that lost customers, or all of them, fails).

    Rows are taken in rank order (ties by item id keep this deterministic); `rank_errors`
    counts rows whose rank differs from their position, `score_increases` counts rows whose
    score is higher than the row above.
    """
    ordered = recs.sort(USER_ID, RANK, ITEM_ID)
    counts = ordered.group_by(USER_ID, maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("rows"),
        (pl.len() - pl.col(ITEM_ID).n_unique()).cast(pl.Int64).alias("duplicate_items"),
        (pl.col(RANK).cast(pl.Int64) != pl.int_range(1, pl.len() + 1))
        .sum()
        .cast(pl.Int64)
        .alias("rank_errors"),
        (pl.col(SCORE).diff() > 0).sum().cast(pl.Int64).alias("score_increases"),
    )
    known = pl.DataFrame({USER_ID: pl.Series(list(known_users), dtype=pl.Utf8).unique().sort()})
    missing = known.join(counts, on=USER_ID, how="anti").with_columns(
        pl.lit(0, dtype=pl.Int64).alias(c)
        for c in ("rows", "duplicate_items", "rank_errors", "score_increases")
    )
    return pl.concat([counts, missing]).with_columns(
        pl.lit(expected_rows, dtype=pl.Int64).alias("expected_rows")
    )


def validate_topk(
    recs: pl.DataFrame,
    k: int,
    catalog_items: Iterable[str],
    known_users: Iterable[str],
    forbidden_items: Iterable[str] = (),
) -> list[SuiteReport]:
    """Row rules and per-customer rules of the top-K: every known customer gets exactly K rows
    where the catalog allows (so an empty output never passes)."""
    known = pl.Series(USER_ID, list(known_users), dtype=pl.Utf8).unique()
    catalog = pl.Series(ITEM_ID, list(catalog_items), dtype=pl.Utf8).unique()
    forbidden = sorted(set(forbidden_items))
    allowed = catalog.len() - int(catalog.is_in(forbidden).sum())
    parameters = {"k": k, "forbidden_items": forbidden, "reasons": list(REASONS)}
    rows = check_frame(TABLE, with_memberships(recs, catalog, known), parameters)
    customers = check_frame(
        TABLE, per_customer(recs, min(k, allowed), known), {"k": k}, aggregate="per_customer"
    )
    return [rows, customers]


def with_memberships(recs: pl.DataFrame, catalog: pl.Series, known: pl.Series) -> pl.DataFrame:
    """The contract's derived columns: each row's id again where the item is in the catalog
    (`catalog_item_id`) and the customer is known (`known_user_id`), else null, so that GE
    compares two columns instead of holding the sets as expectation parameters."""
    return recs.with_columns(
        pl.when(pl.col(ITEM_ID).is_in(catalog.implode())).then(pl.col(ITEM_ID)).alias(CATALOG_ITEM),
        pl.when(pl.col(USER_ID).is_in(known.implode())).then(pl.col(USER_ID)).alias(KNOWN_USER),
    )
