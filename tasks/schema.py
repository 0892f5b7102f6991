"""Polars dtypes of the canonical tables, for code and tests that build frames by hand."""

from __future__ import annotations

import polars as pl

from tasks.constants import (
    EVENT_TYPE,
    ITEM_ID,
    ORDER_ID,
    PRICE,
    QUANTITY,
    SESSION_ID,
    TS,
    USER_ID,
)

EVENTS_SCHEMA: dict[str, pl.DataType] = {
    USER_ID: pl.Utf8(),
    ITEM_ID: pl.Utf8(),
    EVENT_TYPE: pl.Utf8(),
    TS: pl.Datetime("us"),
    QUANTITY: pl.Int64(),
    PRICE: pl.Float64(),
    ORDER_ID: pl.Utf8(),
    SESSION_ID: pl.Utf8(),
}
