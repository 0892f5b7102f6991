"""Stale outputs: published run dates whose input changed after they ran.

A run for date R reads every event before R + 1 day, so loading (or replacing) day D makes
every published R >= D stale. Ingestion flags them in `stale_runs`; `nightrec backfill`
reruns flagged days even when their output is complete; a successful run clears its flag.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import polars as pl
from prefect import task

from tasks.store import connect, sql_text

PARTITION = re.compile(r"^run_date=(\d{4}-\d{2}-\d{2})$")


def published_dates(root: Path | None) -> list[dt.date]:
    """Run dates with a published partition under `root` (the recommendations folder)."""
    if root is None or not root.is_dir():
        return []
    dates = []
    for path in root.iterdir():
        match = PARTITION.match(path.name)
        if match and path.is_dir():
            dates.append(dt.date.fromisoformat(match.group(1)))
    return sorted(dates)


def flag_stale(
    con: duckdb.DuckDBPyConnection,
    published: list[dt.date],
    source: str,
    day: dt.date,
    reason: str,
) -> list[dt.date]:
    """Flag every published run date >= `day`; returns the flagged dates."""
    affected = [d for d in published if d >= day]
    if not affected:
        return []
    con.register("published_dates", pl.DataFrame({"run_date": affected}).to_arrow())
    try:
        con.execute(sql_text("stale_runs"), {"source": source, "event_day": day, "reason": reason})
    finally:
        con.unregister("published_dates")
    return affected


def stale_dates(db_path: Path) -> list[dt.date]:
    """Run dates flagged stale, oldest first (none when there is no store yet)."""
    if not db_path.exists():
        return []
    with connect(db_path) as con:
        rows = con.execute(sql_text("stale_runs_list")).fetchall()
    return [row[0] for row in rows]


def clear_stale(db_path: Path, run_date: dt.date) -> None:
    with connect(db_path) as con:
        con.execute(sql_text("stale_runs_clear"), {"run_date": run_date})


clear_stale_task = task(name="clear-stale")(clear_stale)
