"""Every customer order line of the landing files, loaded as an event or not: the lines that
make a customer one of the evaluation protocol's users (DESIGN.md, "Evaluation protocol":
non-product codes such as POST count for the user set, though they are never items).

The store keeps only the loaded events, so this reads the landing files again through the
same adapter (and column mapping) as ingestion: a line counts when the adapter loaded it or
filtered it as an order line that is no item (`AdaptedFile.activity`). Cancellations,
unknown customers and non-positive quantities or prices do not count. No privacy guard runs
here: use it on a store without pseudonyms, or the ids will not match (`check_covers`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from tasks.constants import EVENT_TYPE, PURCHASE, TS, USER_ID
from tasks.errors import NightrecError
from tasks.ingest.adapters import adapter_for
from tasks.ingest.landing import find_day_files, iter_raw_chunks
from tasks.ingest.mapping import find_mapping

LINE_SCHEMA = {USER_ID: pl.Utf8, TS: pl.Datetime("us")}


class ActivityMismatch(NightrecError, ValueError):
    """The landing files' customers do not cover the store's: other files, or pseudonyms."""

    hint = "read the landing files the store was ingested from, on a store without pseudonyms"


def order_lines(
    source: str,
    landing: Path,
    start: dt.date | None = None,
    end: dt.date | None = None,
    columns_file: Path | None = None,
) -> pl.DataFrame:
    """(user_id, ts) of every customer order line in the day files under `landing` within
    [start, end] (inclusive days): the purchase events the adapter loads (views and carts
    are no order lines) and its activity lines."""
    adapter = adapter_for(source)
    mapping = find_mapping(landing, adapter.known_columns, columns_file)
    parts = [pl.DataFrame(schema=LINE_SCHEMA)]
    for path in find_day_files(landing, start, end):
        for raw in iter_raw_chunks(path):
            if mapping is not None:
                raw = mapping.apply(raw, path)
            adapted = adapter.adapt(raw)
            purchases = adapted.events.filter(pl.col(EVENT_TYPE) == PURCHASE)
            for frame in (purchases, adapted.activity):
                parts.append(frame.select(USER_ID, pl.col(TS).cast(pl.Datetime("us"))))
    return pl.concat(parts).filter(pl.col(USER_ID).is_not_null())


def check_covers(lines: pl.DataFrame, events: pl.DataFrame) -> None:
    """Raise unless every customer with a purchase in the store's `events` has an order line
    in `lines` (the landing files are the store's, read the same way). Views and carts are
    no order lines, so a customer who only browsed has none."""
    buyers = events.filter(pl.col(EVENT_TYPE) == PURCHASE).select(USER_ID).unique()
    missing = buyers.join(lines.select(USER_ID), on=USER_ID, how="anti")
    if missing.height:
        raise ActivityMismatch(
            f"{missing.height:,} customer(s) with purchases in the store have no order line in the "
            f"files (e.g. {missing.get_column(USER_ID).sort().head(3).to_list()})"
        )
