"""`nightrec explain`: one customer's published list with its reasons, read from a partition."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from tasks.constants import (
    ITEM_ID,
    MANIFEST_NAME,
    RANK,
    REASON,
    REASON_DETAIL,
    REASON_FEATURES,
    REC_SOURCE,
    SCORE,
    USER_ID,
)
from tasks.errors import NightrecError
from tasks.ingest.stale import published_dates


class NoPartition(NightrecError):
    hint = "run `nightrec run --date D` first, or pick one of the published dates"


class UnknownCustomer(NightrecError):
    hint = "check the customer id: it must be a customer known to the store on that run date"


@dataclass(frozen=True)
class CustomerList:
    customer: str
    run_date: dt.date
    manifest: dict[str, Any]
    rows: pl.DataFrame  # rank order


def _dates_text(dates: list[dt.date]) -> str:
    if not dates:
        return "none yet"
    shown = ", ".join(d.isoformat() for d in dates[-3:])
    return f"{len(dates)}, newest {shown}" if len(dates) > 3 else shown


def customer_list(root: Path, customer: str, run_date: dt.date | None = None) -> CustomerList:
    """The rows published for `customer` in the partition of `run_date` (default: the newest
    partition). Raises NoPartition or UnknownCustomer (one line and a hint)."""
    dates = published_dates(root)
    if run_date is None:
        if not dates:
            raise NoPartition(f"no published recommendations under {root}")
        run_date = dates[-1]
    folder = root / f"run_date={run_date.isoformat()}"
    if run_date not in dates or not (folder / MANIFEST_NAME).is_file():
        raise NoPartition(
            f"no published partition run_date={run_date} under {root} "
            f"(published dates: {_dates_text(dates)})"
        )
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    rows = (
        pl.scan_parquet(sorted(folder.glob("*.parquet")))
        .filter(pl.col(USER_ID) == customer)
        .sort(RANK)
        .collect()
    )
    if rows.height == 0:
        raise UnknownCustomer(
            f"customer {customer!r} has no list in run_date={run_date} "
            f"({manifest.get('users', 0):,} customers there)"
        )
    if REASON not in rows.columns:
        raise NoPartition(
            f"run_date={run_date} was published before explanations existed",
            hint=f"rerun the day: nightrec run --date {run_date}",
        )
    return CustomerList(customer, run_date, manifest, rows)


def _features_text(text: str | None) -> str:
    """ "a:+0.412;b:-0.108" as "a +0.412, b -0.108"."""
    if not text:
        return ""
    return ", ".join(part.replace(":", " ", 1) for part in text.split(";"))


def render_customer_list(listing: CustomerList) -> str:
    """Plain text: a header, then one line per item (rank, item, score, reason, why) and,
    where the model's contributions were computed, a line of its top features."""
    m = listing.manifest
    head = (
        f"customer {listing.customer}: {listing.rows.height} items published for "
        f"run_date={listing.run_date} by {m.get('model_version')} (K = {m.get('k')})"
    )
    items = [str(v) for v in listing.rows.get_column(ITEM_ID)]
    reasons = [str(v) for v in listing.rows.get_column(REASON)]
    item_w = max(len("item"), *(len(v) for v in items))
    reason_w = max(len("reason"), *(len(v) for v in reasons))
    lines = [
        head,
        f"{'rank':>4}  {'item':<{item_w}}  {'score':>8}  {'reason':<{reason_w}}  why",
    ]
    indent = " " * (4 + 2 + item_w + 2 + 8 + 2 + reason_w + 2)
    for row, item, reason in zip(listing.rows.iter_rows(named=True), items, reasons, strict=True):
        source = "" if row[REC_SOURCE] == "model" else f" [{row[REC_SOURCE]}]"
        lines.append(
            f"{row[RANK]:>4}  {item:<{item_w}}  {row[SCORE]:>8.4f}  {reason:<{reason_w}}  "
            f"{row[REASON_DETAIL]}{source}"
        )
        features = _features_text(row.get(REASON_FEATURES))
        if features:
            lines.append(f"{indent}top features: {features}")
    return "\n".join(lines) + "\n"
