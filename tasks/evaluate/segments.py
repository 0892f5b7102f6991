"""Evaluated customers by history length (distinct orders before T), for per-segment bars."""

from __future__ import annotations

import datetime as dt

import polars as pl

from tasks.constants import EVENT_TYPE, ORDER_ID, PURCHASE, TS, USER_ID

# (label, fewest orders, most orders); the last bucket is open-ended.
HISTORY_SEGMENTS = (("1 order", 1, 1), ("2-3", 2, 3), ("4-9", 4, 9), ("10+", 10, None))
SEGMENT = "segment"


def history_segments(events: pl.DataFrame, users: pl.Series, as_of: dt.datetime) -> pl.DataFrame:
    """user_id, orders (distinct purchase orders before as_of; customer-days when a feed has
    no order id), segment (a HISTORY_SEGMENTS label), for every user in `users`, sorted."""
    order = pl.coalesce(
        pl.col(ORDER_ID), pl.col(USER_ID) + pl.lit("@") + pl.col(TS).dt.date().cast(pl.Utf8)
    )
    orders = (
        events.filter((pl.col(EVENT_TYPE) == PURCHASE) & (pl.col(TS) < as_of))
        .group_by(USER_ID)
        .agg(order.n_unique().alias("orders"))
    )
    label = pl.lit(None, dtype=pl.Utf8)
    for name, low, high in reversed(HISTORY_SEGMENTS):
        inside = pl.col("orders") >= low if high is None else pl.col("orders").is_between(low, high)
        label = pl.when(inside).then(pl.lit(name)).otherwise(label)
    return (
        pl.DataFrame({USER_ID: users})
        .unique()
        .join(orders, on=USER_ID, how="left")
        .with_columns(pl.col("orders").fill_null(0).cast(pl.Int64))
        .with_columns(label.alias(SEGMENT))
        .sort(USER_ID)
    )
