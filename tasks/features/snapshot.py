"""The run's inputs, cut from the store once: events before as-of and the catalog.

Later stages read these Parquet files, never the store, so a run sees one consistent cut.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tasks.constants import TS
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

    def catalog(self) -> pl.DataFrame:
        return pl.read_parquet(self.catalog_path)


def take_snapshot(settings: Settings, as_of: dt.datetime, work_dir: Path) -> Snapshot:
    work_dir.mkdir(parents=True, exist_ok=True)
    with connect(settings.db_path) as con:
        events = pl.from_arrow(
            con.execute(sql_text("events_snapshot"), {"as_of": as_of}).to_arrow_table()
        )
        catalog = pl.from_arrow(con.execute(sql_text("catalog_snapshot")).to_arrow_table())
    events_path, catalog_path = work_dir / "events.parquet", work_dir / "catalog.parquet"
    events.write_parquet(events_path)
    catalog.write_parquet(catalog_path)
    watermark = events.get_column(TS).max() if events.height else None
    return Snapshot(events_path, catalog_path, as_of, events.height, watermark)


snapshot_task = stage_task("snapshot", take_snapshot)
