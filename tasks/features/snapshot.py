"""The run's inputs, cut from the store once: events before as-of and the catalog.

Later stages read these Parquet files, never the store, so a run sees one consistent cut.
DuckDB writes them straight from the store, its buffer pool capped by
`scale.snapshot_memory_mib` (it spills beyond): the events never pass through Python. COPY
streams the rows to the file: about 0.4 GiB beside the process at 10M events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from tasks.constants import EVENT_TYPE, PURCHASE, TS, USER_ID
from tasks.progress import stage_task
from tasks.settings import Settings
from tasks.store import connect, sql_text


@dataclass(frozen=True)
class Snapshot:
    events_path: Path
    catalog_path: Path
    as_of: dt.datetime
    n_events: int
    watermark: dt.datetime | None  # newest event the run saw

    def events(self) -> pl.DataFrame:
        return pl.read_parquet(self.events_path)

    def scan_events(self) -> pl.LazyFrame:
        """The events as a lazy scan: filters and projections are pushed into the read."""
        return pl.scan_parquet(self.events_path)

    def purchases(self, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Every customer's purchases (the item-level aggregates read nothing else), in the
        snapshot's order: a fraction of the events on shops that log views and carts.
        `columns` reads only those (ids and times are a fraction of a purchase's bytes)."""
        scan = self.scan_events().filter(pl.col(EVENT_TYPE) == PURCHASE)
        return (scan if columns is None else scan.select(columns)).collect()

    def users(self) -> pl.Series:
        """Every customer with an event before as-of, sorted (`known_users` of the events)."""
        users = self.scan_events().select(USER_ID).unique().collect(engine="streaming")
        return users.get_column(USER_ID).sort()

    def catalog(self) -> pl.DataFrame:
        return pl.read_parquet(self.catalog_path)


def take_snapshot(settings: Settings, as_of: dt.datetime, work_dir: Path) -> Snapshot:
    work_dir.mkdir(parents=True, exist_ok=True)
    events_path, catalog_path = work_dir / "events.parquet", work_dir / "catalog.parquet"
    # Writable, as ever: a home without a store yet gets an empty one (and an empty cut).
    with connect(settings.db_path, memory_limit_mib=settings.scale.snapshot_memory_mib) as con:
        _write_parquet(con, sql_text("events_snapshot"), {"as_of": as_of}, events_path)
        _write_parquet(con, sql_text("catalog_snapshot"), {}, catalog_path)
    summary = pl.scan_parquet(events_path).select(pl.len(), pl.col(TS).max()).collect()
    n_events, watermark = summary.row(0)
    return Snapshot(events_path, catalog_path, as_of, n_events, watermark)


def _write_parquet(
    con: duckdb.DuckDBPyConnection, query: str, params: dict[str, object], path: Path
) -> None:
    """The rows of `query` written by DuckDB to `path` with COPY, which streams them: the
    relation API's `write_parquet` of the same query peaked at 1.4 GiB at 10M events against
    0.5 GiB for COPY (benchmarks/results/snapshot_memory.md)."""
    select = query.strip().rstrip(";")
    con.execute(
        f"copy (\n{select}\n) to $snapshot_path (format parquet, compression zstd)",
        {**params, "snapshot_path": str(path)},
    )


snapshot_task = stage_task("snapshot", take_snapshot)
