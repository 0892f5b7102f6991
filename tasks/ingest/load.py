"""Load landing files into the store: adapt, validate, quarantine, and replace the day.

Idempotent per (source, day): the same file again is a no-op (checksum), a changed file for a
loaded day is refused unless `replace` is set, and loading a day replaces exactly that day.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from tasks.constants import EVENT_COLUMNS
from tasks.ingest.adapters import REASON, adapter_for
from tasks.ingest.landing import IngestError, day_of, find_day_files, read_raw, sha256_of
from tasks.store import connect, sql_text
from tasks.validate.contracts import ROW_INDEX, validate_rows

log = logging.getLogger("nightrec.ingest")


@dataclass(frozen=True)
class IngestionResult:
    """What happened to one landing file; rows_in = loaded + quarantined + filtered."""

    source: str
    day: dt.date
    file: str
    sha256: str
    status: str  # loaded | replaced | unchanged | rejected
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_filtered: int = 0
    filtered_reasons: dict[str, int] = field(default_factory=dict)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.status == "unchanged":
            return f"{Path(self.file).name}: unchanged (already ingested, same checksum)"
        return (
            f"{Path(self.file).name}: {self.status}, {self.rows_in:,} rows in = "
            f"{self.rows_loaded:,} loaded + {self.rows_quarantined:,} quarantined + "
            f"{self.rows_filtered:,} filtered"
        )


class BadShareError(IngestError):
    """Too many rows of a file broke the contract; the file was not loaded."""


def _previous(con: duckdb.DuckDBPyConnection, source: str, day: dt.date) -> tuple | None:
    return con.execute(
        "select sha256, source_file, status from ingestions where source = ? and event_day = ?",
        [source, day],
    ).fetchone()


def _payloads(raw: pl.DataFrame, bad: pl.DataFrame) -> pl.DataFrame:
    """Bad rows with their raw row as JSON, so a replay after a fix loses nothing."""
    raw_rows = raw.with_row_index(ROW_INDEX).with_columns(pl.col(ROW_INDEX).cast(pl.Int64))
    return (
        bad.join(raw_rows, on=ROW_INDEX, how="left")
        .select(
            (pl.col(ROW_INDEX) + 1).alias("row_number"),
            pl.col(REASON),
            pl.struct(raw.columns).struct.json_encode().alias("payload"),
        )
        .sort("row_number")
    )


def _write_day(
    con: duckdb.DuckDBPyConnection,
    result: IngestionResult,
    events: pl.DataFrame,
    quarantine: pl.DataFrame,
    catalog: pl.DataFrame | None,
) -> None:
    """Replace the (source, day) slice of every table in one transaction."""
    params = {"source": result.source, "event_day": result.day, "source_file": result.file}
    key = [result.source, result.day]
    con.execute("begin transaction")
    try:
        con.execute("delete from events where source = ? and event_day = ?", key)
        con.execute("delete from quarantine where source = ? and event_day = ?", key)
        con.execute("delete from ingestions where source = ? and event_day = ?", key)
        if events.height:
            con.register("staged_events", events.to_arrow())
            con.execute(f"insert into events {sql_text('events')}", params)
            con.unregister("staged_events")
        if quarantine.height:
            con.register("staged_quarantine", quarantine.to_arrow())
            con.execute(f"insert into quarantine {sql_text('quarantine')}", params)
            con.unregister("staged_quarantine")
        if catalog is not None and catalog.height:
            con.register("staged_catalog", catalog.to_arrow())
            con.execute(f"insert or replace into catalog {sql_text('catalog')}")
            con.unregister("staged_catalog")
        con.execute(
            "insert into ingestions values "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_localtimestamp())",
            [
                result.source,
                result.day,
                result.file,
                result.sha256,
                result.status,
                result.rows_in,
                result.rows_loaded,
                result.rows_quarantined,
                result.rows_filtered,
                json.dumps(result.filtered_reasons),
                json.dumps(result.quarantine_reasons),
            ],
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    source: str,
    path: Path,
    *,
    max_bad_share: float,
    replace: bool = False,
) -> IngestionResult:
    """Ingest one day file. Raises IngestError (one line naming the file) when it cannot."""
    adapter = adapter_for(source)
    day = day_of(path)
    checksum = sha256_of(path)
    previous = _previous(con, source, day)
    if previous is not None and previous[2] != "rejected":
        if previous[0] == checksum:
            return IngestionResult(source, day, str(path), checksum, "unchanged")
        if not replace:
            raise IngestError(
                f"{path}: day {day} is already loaded from {previous[1]} with other content; "
                "pass --replace to reload the day"
            )
    raw = read_raw(path)
    try:
        adapted = adapter.adapt(raw)
    except IngestError as exc:
        raise IngestError(f"{path}: {exc}") from exc
    if adapted.ignored_columns:
        log.warning("%s: ignoring unknown column(s) %s", path, ", ".join(adapted.ignored_columns))
    start = dt.datetime.combine(day, dt.time())
    outcome = validate_rows(
        "events",
        adapted.events,
        {"day_start": start, "day_end": start + dt.timedelta(days=1, microseconds=-1)},
    )
    bad = pl.concat([adapted.rejected, outcome.bad_rows])
    events = adapted.events.join(outcome.bad_rows, on=ROW_INDEX, how="anti").select(EVENT_COLUMNS)
    quarantine = _payloads(raw, bad)
    rows_filtered = sum(adapted.filtered.values())
    if raw.height != events.height + bad.height + rows_filtered:
        raise RuntimeError(f"{path}: row accounting broke; this is a bug in the adapter")
    bad_share = bad.height / raw.height if raw.height else 0.0
    status = "replaced" if previous is not None and previous[2] != "rejected" else "loaded"
    if bad_share > max_bad_share:
        status = "rejected"
    result = IngestionResult(
        source=source,
        day=day,
        file=str(path),
        sha256=checksum,
        status=status,
        rows_in=raw.height,
        rows_loaded=0 if status == "rejected" else events.height,
        rows_quarantined=bad.height,
        rows_filtered=rows_filtered,
        filtered_reasons=adapted.filtered,
        quarantine_reasons=dict(sorted(Counter(bad[REASON].to_list()).items())),
        ignored_columns=adapted.ignored_columns,
    )
    if status == "rejected":
        # Keep the bad rows visible in quarantine, load nothing, keep the previous day intact.
        if previous is None or previous[2] == "rejected":
            _write_day(con, result, events.clear(), quarantine, None)
        raise BadShareError(
            f"{path}: {bad_share:.1%} of {raw.height:,} rows broke the contract "
            f"(threshold {max_bad_share:.1%}; reasons: {result.quarantine_reasons}); "
            "nothing loaded. Inspect with `nightrec quarantine list`, fix the file, ingest again"
        )
    _write_day(con, result, events, quarantine, adapted.catalog)
    return result


ProgressCallback = Callable[[int, int, IngestionResult], None]


def ingest_landing(
    db_path: Path,
    source: str,
    landing: Path,
    *,
    max_bad_share: float,
    start: dt.date | None = None,
    end: dt.date | None = None,
    replace: bool = False,
    on_file: ProgressCallback | None = None,
) -> list[IngestionResult]:
    """Ingest every day file under `landing` within [start, end], in day order."""
    adapter_for(source)  # fail on an unknown source before touching the store
    files = find_day_files(landing, start, end)
    results: list[IngestionResult] = []
    with connect(db_path) as con:
        for done, path in enumerate(files, start=1):
            result = ingest_file(con, source, path, max_bad_share=max_bad_share, replace=replace)
            results.append(result)
            if on_file is not None:
                on_file(done, len(files), result)
    return results


def ingest_catalog(db_path: Path, path: Path) -> int:
    """Load a catalog file (item_id, title, category, price); newer rows replace older ones."""
    raw = read_raw(path)
    missing = [c for c in ("item_id", "title", "category", "price") if c not in raw.columns]
    if missing:
        raise IngestError(f"{path}: missing required column(s) {', '.join(missing)}")
    catalog = raw.with_columns(pl.col("price").cast(pl.Float64, strict=False))
    with connect(db_path) as con:
        con.register("staged_catalog", catalog.to_arrow())
        con.execute(f"insert or replace into catalog {sql_text('catalog')}")
        con.unregister("staged_catalog")
    return catalog.height


def result_record(result: IngestionResult) -> dict:
    """A JSON-ready record of one ingestion, for manifests and Prefect artifacts."""
    record = asdict(result)
    record["day"] = result.day.isoformat()
    return record
