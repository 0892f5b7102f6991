"""Load landing files into the store: adapt, validate, quarantine, and replace the day.

Idempotent per (source, day): the same file again is a no-op (checksum), a changed file for a
loaded day is refused unless `replace` is set, and loading a day replaces exactly that day.

Memory stays flat however large the file: each chunk is adapted and validated on its own and
its rows are staged as Parquet parts under `NIGHTREC_HOME/staging/`, outside any transaction;
then one short transaction swaps the day in (delete the day, insert-select from the parts,
bookkeeping). DuckDB streams that insert-select within its memory cap, whereas rows inserted
chunk by chunk inside one open transaction stay in memory until the commit. A process killed
while staging leaves only parts, which the next ingestion into the store removes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from tasks.constants import EVENT_COLUMNS, ITEM_ID
from tasks.ingest.adapters import REASON, SourceAdapter, adapter_for
from tasks.ingest.landing import (
    DEFAULT_CHUNK_BYTES,
    IngestError,
    day_of,
    find_day_files,
    iter_raw_chunks,
    read_raw,
    sha256_of,
)
from tasks.ingest.stale import flag_stale, published_dates
from tasks.safety.faults import kill_if_armed
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
    stale_runs: list[str] = field(default_factory=list)  # published run dates now stale

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

    hint = "inspect quarantined rows (`nightrec quarantine list`), fix the file, ingest again"


def _previous(con: duckdb.DuckDBPyConnection, source: str, day: dt.date) -> tuple | None:
    return con.execute(
        "select sha256, source_file, status from ingestions where source = ? and event_day = ?",
        [source, day],
    ).fetchone()


def _payloads(raw: pl.DataFrame, bad: pl.DataFrame, offset: int) -> pl.DataFrame:
    """Bad rows with their raw row as JSON, so a replay after a fix loses nothing."""
    raw_rows = raw.with_row_index(ROW_INDEX).with_columns(pl.col(ROW_INDEX).cast(pl.Int64))
    return (
        bad.join(raw_rows, on=ROW_INDEX, how="left")
        .select(
            (pl.col(ROW_INDEX) + 1 + offset).alias("row_number"),
            pl.col(REASON),
            pl.struct(raw.columns).struct.json_encode().alias("payload"),
        )
        .sort("row_number")
    )


def insert_staged(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pl.DataFrame,
    params: dict,
    verb: str = "insert",
) -> None:
    """Insert `frame` into `table` through `sql/<table>.sql` (which reads `staged_<table>`)."""
    if frame.height == 0:
        return
    con.register(f"staged_{table}", frame.to_arrow())
    try:
        con.execute(f"{verb} into {table} {sql_text(table)}", params)
    finally:
        con.unregister(f"staged_{table}")


def insert_parts(
    con: duckdb.DuckDBPyConnection,
    table: str,
    parts: list[Path],
    params: dict,
) -> None:
    """Insert staged Parquet `parts` into `table` through `sql/<table>.sql`, streamed by DuckDB
    within its memory cap (the parts are read as the view `staged_<table>`)."""
    if not parts:
        return
    con.register(f"staged_{table}", con.read_parquet([str(p) for p in parts]))
    try:
        con.execute(f"insert into {table} {sql_text(table)}", params)
    finally:
        con.unregister(f"staged_{table}")


STAGING_DIR = "staging"
# Column types of the staged parts, fixed so that every part of a file reads as one schema.
STAGED_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "events": {
        "user_id": pl.Utf8(),
        "item_id": pl.Utf8(),
        "event_type": pl.Utf8(),
        "ts": pl.Datetime("us"),
        "quantity": pl.Int64(),
        "price": pl.Float64(),
        "order_id": pl.Utf8(),
        "session_id": pl.Utf8(),
    },
    "quarantine": {"row_number": pl.Int64(), REASON: pl.Utf8(), "payload": pl.Utf8()},
}


def staging_root(con: duckdb.DuckDBPyConnection) -> Path:
    """Where ingestion into this store stages its chunks: `staging/ingest-<store>/` beside
    the store file (in NIGHTREC_HOME). Only the store's one writer uses it (DuckDB admits one
    writing process per file), so whatever it holds when an ingestion starts is left over."""
    (db_file,) = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    if db_file is None:  # an in-memory store
        return Path(tempfile.gettempdir()) / f"nightrec-ingest-{id(con)}"
    db_path = Path(db_file)
    return db_path.parent / STAGING_DIR / f"ingest-{db_path.stem}"


def clean_staging(root: Path) -> list[str]:
    """Remove what an interrupted ingestion left in `root`; returns what was removed."""
    if not root.is_dir():
        return []
    leftovers = sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))
    shutil.rmtree(root)
    return leftovers


@dataclass
class _Staged:
    """The validated rows of one file, staged as Parquet parts (one per chunk and table)."""

    folder: Path
    parts: dict[str, list[Path]] = field(default_factory=lambda: {t: [] for t in STAGED_SCHEMAS})

    def add(self, table: str, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{table}-{len(self.parts[table]):06d}.parquet"
        frame.select(STAGED_SCHEMAS[table].keys()).cast(STAGED_SCHEMAS[table]).write_parquet(
            path, compression="zstd", statistics=False
        )
        self.parts[table].append(path)


def _record_ingestion(con: duckdb.DuckDBPyConnection, result: IngestionResult) -> None:
    con.execute(
        "insert or replace into ingestions (source, event_day, source_file, sha256, status, "
        "rows_in, rows_loaded, rows_quarantined, rows_filtered, filtered_reasons, "
        "quarantine_reasons, ingested_at, ignored_columns) "
        "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_localtimestamp(), ?)",
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
            json.dumps(result.ignored_columns),
        ],
    )


@dataclass
class _Tally:
    """Running counts over the chunks of one file."""

    rows_in: int = 0
    rows_loaded: int = 0
    filtered: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)
    ignored: list[str] = field(default_factory=list)
    catalog: pl.DataFrame | None = None  # distinct items so far, first occurrence kept

    def add_catalog(self, catalog: pl.DataFrame) -> None:
        both = catalog if self.catalog is None else pl.concat([self.catalog, catalog])
        self.catalog = both.unique(subset=ITEM_ID, keep="first", maintain_order=True)


def day_bounds(day: dt.date) -> dict[str, dt.datetime]:
    """The contract parameters that pin a file's events to its day."""
    start = dt.datetime.combine(day, dt.time())
    return {"day_start": start, "day_end": start + dt.timedelta(days=1, microseconds=-1)}


def _stage_chunk(
    staged: _Staged,
    adapter: SourceAdapter,
    raw: pl.DataFrame,
    day: dt.date,
    params: dict,
    tally: _Tally,
) -> None:
    """Adapt, validate and stage one chunk; rows keep their number in the whole file."""
    adapted = adapter.adapt(raw)
    tally.ignored.extend(c for c in adapted.ignored_columns if c not in tally.ignored)
    outcome = validate_rows("events", adapted.events, day_bounds(day))
    bad = pl.concat([adapted.rejected, outcome.bad_rows])
    events = adapted.events.join(outcome.bad_rows, on=ROW_INDEX, how="anti").select(EVENT_COLUMNS)
    if raw.height != events.height + bad.height + sum(adapted.filtered.values()):
        raise RuntimeError(f"{params['source_file']}: row accounting broke; a bug in the adapter")
    staged.add("events", events)
    staged.add("quarantine", _payloads(raw, bad, tally.rows_in))
    tally.rows_in += raw.height
    tally.rows_loaded += events.height
    tally.filtered.update(adapted.filtered)
    tally.quarantined.update(bad[REASON].to_list())
    if adapted.catalog is not None:
        tally.add_catalog(adapted.catalog)


def _swap_day(
    con: duckdb.DuckDBPyConnection,
    staged: _Staged,
    result: IngestionResult,
    catalog: pl.DataFrame | None,
    published_root: Path | None,
    fault: str | None,
) -> list[dt.date]:
    """Replace the day by its staged rows in one transaction: all of it or nothing. A rejected
    file loads no event; its bad rows stay visible in quarantine. Returns stale run dates."""
    params = {"source": result.source, "event_day": result.day, "source_file": result.file}
    key = [result.source, result.day]
    con.execute("begin transaction")
    try:
        for table in ("events", "quarantine", "ingestions"):
            con.execute(f"delete from {table} where source = ? and event_day = ?", key)
        if result.status != "rejected":
            insert_parts(con, "events", staged.parts["events"], params)
        insert_parts(con, "quarantine", staged.parts["quarantine"], params)
        kill_if_armed(fault, "mid_ingest_swap")
        stale: list[dt.date] = []
        if result.status != "rejected":
            if catalog is not None:
                insert_staged(con, "catalog", catalog, {}, verb="insert or replace")
            stale = flag_stale(
                con,
                published_dates(published_root),
                result.source,
                result.day,
                f"day {result.day} {result.status} late",
            )
        _record_ingestion(con, result)
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # nothing to undo when it already ended
            con.execute("rollback")
        raise
    return stale


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    source: str,
    path: Path,
    *,
    max_bad_share: float,
    replace: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    published_root: Path | None = None,
    fault: str | None = None,
) -> IngestionResult:
    """Ingest one day file: stream it in chunks, stage the validated rows as Parquet parts,
    then swap the day in with one transaction, so the day is replaced whole or not at all and
    memory does not grow with the file. Raises IngestError (one line naming the file) when it
    cannot.

    `published_root` (the recommendations folder) lets a late or replaced day flag the
    published run dates that read it as stale."""
    adapter = adapter_for(source)
    day = day_of(path)
    root = staging_root(con)
    leftovers = clean_staging(root)
    if leftovers:
        log.warning(
            "removed %d staged part(s) an interrupted ingestion left under %s",
            len(leftovers),
            root,
        )
    checksum = sha256_of(path)
    previous = _previous(con, source, day)
    loaded_before = previous is not None and previous[2] != "rejected"
    if loaded_before:
        if previous[0] == checksum:
            return IngestionResult(source, day, str(path), checksum, "unchanged")
        if not replace:
            raise IngestError(
                f"{path}: day {day} is already loaded from {previous[1]} with other content; "
                "pass --replace to reload the day"
            )
    params = {"source": source, "event_day": day, "source_file": str(path)}
    tally = _Tally()
    staged = _Staged(root / source / day.isoformat())
    try:
        for raw in iter_raw_chunks(path, chunk_bytes):
            try:
                _stage_chunk(staged, adapter, raw, day, params, tally)
            except IngestError as exc:
                raise IngestError(f"{path}: {exc}") from exc
            kill_if_armed(fault, "mid_ingest")
        if tally.ignored:
            log.warning("%s: ignoring unknown column(s) %s", path, ", ".join(tally.ignored))
        rows_bad = sum(tally.quarantined.values())
        bad_share = rows_bad / tally.rows_in if tally.rows_in else 0.0
        status = "replaced" if loaded_before else "loaded"
        if bad_share > max_bad_share:
            status = "rejected"
        result = IngestionResult(
            source=source,
            day=day,
            file=str(path),
            sha256=checksum,
            status=status,
            rows_in=tally.rows_in,
            rows_loaded=0 if status == "rejected" else tally.rows_loaded,
            rows_quarantined=rows_bad,
            rows_filtered=sum(tally.filtered.values()),
            filtered_reasons=dict(sorted(tally.filtered.items())),
            quarantine_reasons=dict(sorted(tally.quarantined.items())),
            ignored_columns=tally.ignored,
        )
        kill_if_armed(fault, "before_ingest_swap")
        stale: list[dt.date] = []
        # A rejected replacement changes nothing: the previous load of the day stays as it was.
        if not (status == "rejected" and loaded_before):
            stale = _swap_day(con, staged, result, tally.catalog, published_root, fault)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if status == "rejected":
        raise BadShareError(
            f"{path}: {bad_share:.1%} of {tally.rows_in:,} rows broke the contract "
            f"(threshold {max_bad_share:.1%}; reasons: {result.quarantine_reasons}); "
            "nothing loaded. Inspect with `nightrec quarantine list`, fix the file, ingest again"
        )
    if stale:
        log.warning(
            "%s: published run date(s) %s read this day and are now stale; "
            "`nightrec backfill` reruns them",
            path.name,
            ", ".join(d.isoformat() for d in stale),
        )
    return dataclasses.replace(result, stale_runs=[d.isoformat() for d in stale])


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
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    published_root: Path | None = None,
    fault: str | None = None,
    memory_limit_mib: int | None = None,
) -> list[IngestionResult]:
    """Ingest every day file under `landing` within [start, end], in day order (see
    `ingest_file` for the keyword arguments)."""
    adapter_for(source)  # fail on an unknown source before touching the store
    files = find_day_files(landing, start, end)
    results: list[IngestionResult] = []
    with connect(db_path, memory_limit_mib=memory_limit_mib) as con:
        for done, path in enumerate(files, start=1):
            result = ingest_file(
                con,
                source,
                path,
                max_bad_share=max_bad_share,
                replace=replace,
                chunk_bytes=chunk_bytes,
                published_root=published_root,
                fault=fault,
            )
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
