"""Source adapters: map a foreign landing schema onto the canonical event schema.

An adapter never drops a row silently: each raw row ends up as a canonical event, a
rejected row (it could not be parsed; quarantined with the reason), or a filtered row (left
out on purpose, counted per reason).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from tasks.constants import (
    CATALOG_COLUMNS,
    CATEGORY,
    EVENT_COLUMNS,
    EVENT_TYPE,
    ITEM_ID,
    ORDER_ID,
    PRICE,
    PURCHASE,
    QUANTITY,
    REQUIRED_EVENT_COLUMNS,
    SESSION_ID,
    TITLE,
    TS,
    USER_ID,
)
from tasks.ingest.landing import IngestError
from tasks.validate.contracts import ROW_INDEX

# Timestamps a landing file may carry: naive (taken as is), a bare date (midnight), or zoned
# (an offset or `Z`: converted to UTC, then stored naive). `%.f` accepts optional fractions.
TS_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%m/%d/%Y %H:%M",
)
DATE_FORMATS = ("%Y-%m-%d",)
ZONED_TS_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z")
REASON = "reason"
# Canonical defaults for real exports (README, "Source adapters").
DEFAULT_QUANTITY = 1
DEFAULTED_QUANTITY = "defaulted:quantity"  # quantity null or no quantity column -> 1
MISSING_PRICE = "missing:price"  # price null or no price column -> stays null


@dataclass(frozen=True)
class AdaptedFile:
    """One landing file after adaptation; `rows_in == events + rejected + sum(filtered)`."""

    events: pl.DataFrame  # canonical columns + _row
    rejected: pl.DataFrame  # _row, reason
    filtered: dict[str, int]
    catalog: pl.DataFrame | None = None
    ignored_columns: list[str] = field(default_factory=list)
    # Rows of `events` that carry a documented default (_row, reason), e.g. defaulted:quantity;
    # a row may appear once per reason. Counted over the rows that end up loaded.
    defaulted: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={ROW_INDEX: pl.Int64, REASON: pl.Utf8})
    )
    # Filtered rows that are still a customer's order line (_row, user_id, ts), e.g. postage or
    # fee lines that are no item: not loaded, but they make a customer one of the evaluation
    # protocol's users (DESIGN.md, "Evaluation protocol"; tasks/protocol/split.py).
    activity: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(
            schema={ROW_INDEX: pl.Int64, USER_ID: pl.Utf8, TS: pl.Datetime("us")}
        )
    )


class SourceAdapter(Protocol):
    name: str
    required_columns: tuple[str, ...]
    known_columns: tuple[str, ...]
    # The raw column that holds the customer, and how its text becomes the loaded user_id
    # (privacy: pseudonyms and the erasure list work on that id, before the adapter runs).
    user_column: str

    def user_id(self, raw: pl.Expr) -> pl.Expr: ...

    def adapt(self, raw: pl.DataFrame) -> AdaptedFile: ...


def _check_columns(adapter: SourceAdapter, raw: pl.DataFrame) -> list[str]:
    missing = [c for c in adapter.required_columns if c not in raw.columns]
    if missing:
        raise IngestError(
            f"missing required column(s) {', '.join(missing)} for source {adapter.name!r} "
            f"(found: {', '.join(raw.columns) or 'none'})"
        )
    return [c for c in raw.columns if c not in adapter.known_columns]


def _clean_text(column: str) -> pl.Expr:
    """Trimmed text with empty strings as null."""
    return _clean_expr(pl.col(column))


def _clean_expr(expr: pl.Expr) -> pl.Expr:
    text = expr.str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _parse_ts(column: str) -> pl.Expr:
    """Naive, date-only or zoned text -> naive timestamp (zoned ones in UTC); null if none fits."""
    text = _clean_text(column).str.replace(r"[Zz]$", "+00:00")
    naive = [text.str.strptime(pl.Datetime("us"), fmt, strict=False) for fmt in TS_FORMATS]
    dates = [
        text.str.strptime(pl.Date, fmt, strict=False).cast(pl.Datetime("us"))
        for fmt in DATE_FORMATS
    ]
    zoned = [
        text.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False).dt.replace_time_zone(None)
        for fmt in ZONED_TS_FORMATS
    ]
    return pl.coalesce([*naive, *dates, *zoned])


def _parse_count(column: str) -> pl.Expr:
    """An integer count; `2.0` (an integral float, as spreadsheets write it) is 2."""
    text = _clean_text(column)
    number = text.cast(pl.Float64, strict=False)
    integral = number.is_finite() & (number == number.round(0)) & (number.abs() < 2**53)
    return (
        pl.when(text.cast(pl.Int64, strict=False).is_not_null())
        .then(text.cast(pl.Int64, strict=False))
        .when(integral)
        .then(number.cast(pl.Int64, strict=False))
    )


def _first_parse_failure(checks: list[tuple[str, str, str]]) -> pl.Expr:
    """First failed parse per row as a reason (null when all parsed).

    Each check is (raw column, parsed column, reason): a value was given but did not parse.
    """
    return pl.coalesce(
        [
            pl.when(pl.col(f"__raw_{raw}").is_not_null() & pl.col(parsed).is_null()).then(
                pl.lit(reason)
            )
            for raw, parsed, reason in checks
        ]
    )


def _split_rejected(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    rejected = frame.filter(pl.col(REASON).is_not_null()).select(ROW_INDEX, REASON)
    return frame.filter(pl.col(REASON).is_null()), rejected


class CanonicalAdapter:
    """Landing files in the canonical schema: the synthetic shop, or a real shop's export
    (through a column mapping). Real exports need not invent values:

    - `quantity` null or absent -> 1 (counted as `defaulted:quantity`); `price` null or absent
      stays null (counted as `missing:price`);
    - returns (quantity < 0) and zero quantities are filtered (`return`, `zero_quantity`);
    - optional `title` / `category` columns feed the catalog of the items seen.
    """

    name = "canonical"
    required_columns = REQUIRED_EVENT_COLUMNS
    known_columns = (*EVENT_COLUMNS, TITLE, CATEGORY)
    user_column = USER_ID

    def user_id(self, raw: pl.Expr) -> pl.Expr:
        return _clean_expr(raw)

    def adapt(self, raw: pl.DataFrame) -> AdaptedFile:
        ignored = _check_columns(self, raw)
        for optional in (QUANTITY, PRICE, ORDER_ID, SESSION_ID):
            if optional not in raw.columns:
                raw = raw.with_columns(pl.lit(None, dtype=pl.Utf8).alias(optional))
        items = [c for c in (TITLE, CATEGORY) if c in raw.columns]
        frame = raw.with_row_index(ROW_INDEX).with_columns(
            pl.col(ROW_INDEX).cast(pl.Int64),
            *(_clean_text(c).alias(f"__raw_{c}") for c in (TS, QUANTITY, PRICE)),
        )
        frame = frame.with_columns(
            self.user_id(pl.col(USER_ID)).alias(USER_ID),
            _clean_text(ITEM_ID).alias(ITEM_ID),
            _clean_text(EVENT_TYPE).str.to_lowercase().alias(EVENT_TYPE),
            _parse_ts(TS).alias(TS),
            _parse_count(QUANTITY).alias(QUANTITY),
            _clean_text(PRICE).cast(pl.Float64, strict=False).alias(PRICE),
            _clean_text(ORDER_ID).alias(ORDER_ID),
            _clean_text(SESSION_ID).alias(SESSION_ID),
            *(_clean_text(c).alias(c) for c in items),
        )
        frame = frame.with_columns(
            _first_parse_failure(
                [
                    (TS, TS, "unparseable:ts"),
                    (QUANTITY, QUANTITY, "not_an_integer:quantity"),
                    (PRICE, PRICE, "not_a_number:price"),
                ]
            ).alias(REASON)
        )
        good, rejected = _split_rejected(frame)
        filter_reason = (
            pl.when(pl.col(QUANTITY) < 0)
            .then(pl.lit("return"))
            .when(pl.col(QUANTITY) == 0)
            .then(pl.lit("zero_quantity"))
        )
        good = good.with_columns(filter_reason.alias("__filter"))
        counts = good.filter(pl.col("__filter").is_not_null()).group_by("__filter").len()
        filtered = dict(zip(counts["__filter"].to_list(), counts["len"].to_list(), strict=True))
        kept = good.filter(pl.col("__filter").is_null())
        defaulted = pl.concat(
            [
                kept.filter(pl.col(QUANTITY).is_null()).select(
                    ROW_INDEX, pl.lit(DEFAULTED_QUANTITY).alias(REASON)
                ),
                kept.filter(pl.col(PRICE).is_null()).select(
                    ROW_INDEX, pl.lit(MISSING_PRICE).alias(REASON)
                ),
            ]
        )
        kept = kept.with_columns(pl.col(QUANTITY).fill_null(DEFAULT_QUANTITY))
        catalog = None
        if items:
            catalog = (
                kept.filter(pl.col(ITEM_ID).is_not_null())
                .group_by(ITEM_ID, maintain_order=True)
                .agg(pl.col(c).drop_nulls().last().alias(c) for c in items)
                .with_columns(
                    pl.lit(None, dtype=pl.Utf8).alias(c)
                    for c in (TITLE, CATEGORY)
                    if c not in items
                )
                .with_columns(pl.lit(None, dtype=pl.Float64).alias(PRICE))
                .select(CATALOG_COLUMNS)
            )
        return AdaptedFile(
            events=kept.select(*EVENT_COLUMNS, ROW_INDEX),
            rejected=rejected,
            filtered={k: int(v) for k, v in sorted(filtered.items())},
            catalog=catalog,
            ignored_columns=ignored,
            defaulted=defaulted,
        )


# Stock codes of the UCI Online Retail data that are fees, postage or adjustments, not goods.
ONLINE_RETAIL_PRODUCT_CODE = re.compile(r"^(\d{5}[A-Za-z]{0,2}|DCGS\w+)$")


class OnlineRetailAdapter:
    """UCI Online Retail order lines -> purchase events (quirks: ../shared/.../README.md)."""

    name = "online-retail"
    required_columns = (
        "InvoiceNo",
        "StockCode",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
    )
    known_columns = (*required_columns, "Description", "Country")
    user_column = "CustomerID"

    def user_id(self, raw: pl.Expr) -> pl.Expr:
        # CustomerID is written like "17850.0"; the id is the integer part.
        return _clean_expr(raw).str.replace(r"\.0+$", "")

    def adapt(self, raw: pl.DataFrame) -> AdaptedFile:
        ignored = _check_columns(self, raw)
        if "Description" not in raw.columns:
            raw = raw.with_columns(pl.lit(None, dtype=pl.Utf8).alias("Description"))
        frame = raw.with_row_index(ROW_INDEX).with_columns(
            pl.col(ROW_INDEX).cast(pl.Int64),
            *(_clean_text(c).alias(f"__raw_{c}") for c in ("Quantity", "UnitPrice", "InvoiceDate")),
        )
        frame = frame.with_columns(
            self.user_id(pl.col(self.user_column)).alias(USER_ID),
            _clean_text("StockCode").str.to_uppercase().alias(ITEM_ID),
            pl.lit(PURCHASE).alias(EVENT_TYPE),
            _parse_ts("InvoiceDate").alias(TS),
            _clean_text("Quantity").cast(pl.Int64, strict=False).alias(QUANTITY),
            _clean_text("UnitPrice").cast(pl.Float64, strict=False).alias(PRICE),
            _clean_text("InvoiceNo").alias(ORDER_ID),
            pl.lit(None, dtype=pl.Utf8).alias(SESSION_ID),
            _clean_text("Description").alias(TITLE),
        )
        frame = frame.with_columns(
            _first_parse_failure(
                [
                    ("InvoiceDate", TS, "unparseable:InvoiceDate"),
                    ("Quantity", QUANTITY, "not_an_integer:Quantity"),
                    ("UnitPrice", PRICE, "not_a_number:UnitPrice"),
                ]
            ).alias(REASON)
        )
        parsed, rejected = _split_rejected(frame)
        filter_reason = (
            pl.when(pl.col(ORDER_ID).str.starts_with("C"))
            .then(pl.lit("cancellation"))
            .when(pl.col(USER_ID).is_null())
            .then(pl.lit("unknown_customer"))
            .when(~pl.col(ITEM_ID).fill_null("").str.contains(ONLINE_RETAIL_PRODUCT_CODE.pattern))
            .then(pl.lit("non_product_code"))
            .when(pl.col(QUANTITY) <= 0)
            .then(pl.lit("non_positive_quantity"))
            .when(pl.col(PRICE) <= 0)
            .then(pl.lit("non_positive_price"))
        )
        parsed = parsed.with_columns(filter_reason.alias("__filter"))
        counts = parsed.filter(pl.col("__filter").is_not_null()).group_by("__filter").len()
        filtered = dict(zip(counts["__filter"].to_list(), counts["len"].to_list(), strict=True))
        kept = parsed.filter(pl.col("__filter").is_null())
        # A fee or postage line of a real order (known customer, not a cancellation, positive
        # quantity and price) is no item, but it is the customer's order line.
        activity = parsed.filter(
            (pl.col("__filter") == "non_product_code")
            & (pl.col(QUANTITY) > 0)
            & (pl.col(PRICE) > 0)
        ).select(ROW_INDEX, USER_ID, pl.col(TS).cast(pl.Datetime("us")))
        catalog = (
            kept.group_by(ITEM_ID)
            .agg(
                pl.col(TITLE).drop_nulls().mode().sort().first().alias(TITLE),
                pl.col(PRICE).median().alias(PRICE),
            )
            .with_columns(pl.col(ITEM_ID).str.slice(0, 3).alias(CATEGORY))
            .select(CATALOG_COLUMNS)
        )
        return AdaptedFile(
            events=kept.select(*EVENT_COLUMNS, ROW_INDEX),
            rejected=rejected,
            filtered={k: int(v) for k, v in sorted(filtered.items())},
            catalog=catalog,
            ignored_columns=ignored,
            activity=activity,
        )


ADAPTERS: dict[str, SourceAdapter] = {
    adapter.name: adapter for adapter in (CanonicalAdapter(), OnlineRetailAdapter())
}


def adapter_for(source: str) -> SourceAdapter:
    try:
        return ADAPTERS[source]
    except KeyError:
        raise IngestError(
            f"unknown source {source!r}; choose one of: {', '.join(sorted(ADAPTERS))}",
            hint="use --source " + " or ".join(sorted(ADAPTERS)),
        ) from None
