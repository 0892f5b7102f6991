"""Top-K lists from scored candidates, padded with popular items where a list is short."""

from __future__ import annotations

import polars as pl

from tasks.constants import ITEM_ID, RANK, REC_SOURCE, SCORE, USER_ID

MODEL_SOURCE = "model"
FALLBACK_SOURCE = "popularity_fallback"
# The version (and row source) of lists served by the repurchase baseline, when no model can.
BASELINE_VERSION = "baseline-repurchase"


def top_k(scored: pl.DataFrame, users: pl.Series, popular: pl.Series, k: int) -> pl.DataFrame:
    """user_id, item_id, rank (1..k), score, source for every user in `users`.

    `scored` has user_id, item_id, score; `popular` lists item ids best first. A user whose
    candidates give fewer than k items is padded with popular items they do not have yet;
    padded rows score below all of the user's model scores, so scores never increase.
    """
    ranked = (
        scored.join(pl.DataFrame({USER_ID: users}), on=USER_ID, how="semi")
        .sort([USER_ID, SCORE, ITEM_ID], descending=[False, True, False])
        .group_by(USER_ID, maintain_order=True)
        .head(k)
        .with_columns(pl.lit(MODEL_SOURCE).alias(REC_SOURCE))
    )
    # 2k popular items always leave k that the user's list does not already hold.
    pad_list = popular.head(2 * k)
    pad_items = pl.DataFrame({ITEM_ID: pad_list, "pad_pos": range(1, len(pad_list) + 1)})
    floor = ranked.group_by(USER_ID).agg(pl.col(SCORE).min().alias("floor"))
    padding = (
        pl.DataFrame({USER_ID: users})
        .join(pad_items, how="cross")
        .join(ranked.select(USER_ID, ITEM_ID), on=[USER_ID, ITEM_ID], how="anti")
        .join(floor, on=USER_ID, how="left")
        .with_columns(
            (pl.col("floor").fill_null(0.0) - pl.col("pad_pos").cast(pl.Float64)).alias(SCORE),
            pl.lit(FALLBACK_SOURCE).alias(REC_SOURCE),
        )
        .sort(USER_ID, "pad_pos")
        .select(USER_ID, ITEM_ID, SCORE, REC_SOURCE)
    )
    combined = pl.concat([ranked.select(USER_ID, ITEM_ID, SCORE, REC_SOURCE), padding])
    return (
        combined.group_by(USER_ID, maintain_order=True)
        .head(k)
        .with_columns(pl.int_range(1, pl.len() + 1).over(USER_ID).cast(pl.Int32).alias(RANK))
        .select(USER_ID, ITEM_ID, RANK, SCORE, REC_SOURCE)
        .sort(USER_ID, RANK)
    )
