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
import hashlib
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

from tasks.constants import (
    BRAND,
    CATALOG_FILE_COLUMNS,
    CATALOG_ORIGIN,
    CATEGORY,
    DEFAULT_CHUNK_BYTES,
    EVENT_COLUMNS,
    FIRST_SEEN,
    ITEM_ID,
    LAST_SEEN,
    PRICE,
    PRICE_SEEN_AT,
    TITLE,
    TS,
)
from tasks.ingest.adapters import REASON, AdaptedFile, SourceAdapter, adapter_for
from tasks.ingest.landing import (
    IngestError,
    check_range,
    day_of,
    explain_no_day_files,
    find_catalog_files,
    find_day_files,
    iter_raw_chunks,
    read_raw,
    sha256_of,
)
from tasks.ingest.mapping import ColumnMapping, find_mapping
from tasks.ingest.stale import flag_stale, published_dates
from tasks.privacy.guard import ERASED, IdGuard, bind_guard
from tasks.safety.faults import kill_if_armed
from tasks.settings import PrivacySettings, load_settings
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
    # Loaded rows that carry a documented default, per reason (e.g. defaulted:quantity,
    # missing:price); a row may count under several reasons. Not part of rows_in's sum.
    defaulted_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        if self.status == "unchanged":
            return f"{Path(self.file).name}: unchanged (already ingested, same checksum)"
        defaulted = ", ".join(f"{k} {v:,}" for k, v in self.defaulted_reasons.items())
        return (
            f"{Path(self.file).name}: {self.status}, {self.rows_in:,} rows in = "
            f"{self.rows_loaded:,} loaded + {self.rows_quarantined:,} quarantined + "
            f"{self.rows_filtered:,} filtered"
            + (f" (with defaults: {defaulted})" if defaulted else "")
        )


class BadShareError(IngestError):
    """Too many rows of a file broke the contract; the file was not loaded."""

    hint = "inspect quarantined rows (`nightrec quarantine list`), fix the file, ingest again"


def _previous(con: duckdb.DuckDBPyConnection, source: str, day: dt.date) -> tuple | None:
    return con.execute(
        sql_text("ingestion_previous"), {"source": source, "event_day": day}
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


# Tables loaded from staged rows. Each has its own `sql/<table>.sql` (an insert that reads
# `staged_<table>`); a table name is checked against this fixed tuple before it names a file
# or a registered view, and it is never formatted into SQL.
STAGED_TABLES = ("events", "quarantine")


def _staged_table(table: str) -> str:
    if table not in STAGED_TABLES:
        raise ValueError(f"no staged insert for table {table!r} (one of {STAGED_TABLES})")
    return table


def insert_staged(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pl.DataFrame,
    params: dict,
) -> None:
    """Insert `frame` into `table` through `sql/<table>.sql` (which reads `staged_<table>`)."""
    table = _staged_table(table)
    if frame.height == 0:
        return
    con.register(f"staged_{table}", frame.to_arrow())
    try:
        con.execute(sql_text(table), params)
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
    table = _staged_table(table)
    if not parts:
        return
    con.register(f"staged_{table}", con.read_parquet([str(p) for p in parts]))
    try:
        con.execute(sql_text(table), params)
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
    (db_file,) = con.execute(sql_text("store_file")).fetchone()
    if db_file is None:  # an in-memory store
        return Path(tempfile.gettempdir()) / f"nightrec-ingest-{id(con)}"
    db_path = Path(db_file)
    return db_path.parent / STAGING_DIR / f"ingest-{db_path.stem}"


def store_guard(con: duckdb.DuckDBPyConnection, privacy: PrivacySettings) -> IdGuard:
    """The privacy guard of the store `con` is open on (its key file lives beside it)."""
    (db_file,) = con.execute(sql_text("store_file")).fetchone()
    home = Path(db_file).parent if db_file else Path(tempfile.gettempdir())
    return bind_guard(con, privacy, home)


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
        sql_text("ingestions"),
        {
            "source": result.source,
            "event_day": result.day,
            "source_file": result.file,
            "sha256": result.sha256,
            "status": result.status,
            "rows_in": result.rows_in,
            "rows_loaded": result.rows_loaded,
            "rows_quarantined": result.rows_quarantined,
            "rows_filtered": result.rows_filtered,
            "filtered_reasons": json.dumps(result.filtered_reasons),
            "quarantine_reasons": json.dumps(result.quarantine_reasons),
            "ignored_columns": json.dumps(result.ignored_columns),
            "defaulted_reasons": json.dumps(result.defaulted_reasons),
        },
    )


@dataclass
class _Tally:
    """Running counts over the chunks of one file."""

    rows_in: int = 0
    rows_loaded: int = 0
    filtered: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)
    ignored: list[str] = field(default_factory=list)
    defaulted: Counter = field(default_factory=Counter)
    catalog: pl.DataFrame | None = None  # the adapter's items so far, first occurrence kept
    seen: pl.DataFrame | None = None  # per loaded item: first/last seen, last price (and its ts)

    def add_catalog(self, catalog: pl.DataFrame) -> None:
        both = catalog if self.catalog is None else pl.concat([self.catalog, catalog])
        self.catalog = both.unique(subset=ITEM_ID, keep="first", maintain_order=True)

    def add_seen(self, events: pl.DataFrame) -> None:
        frames = [events.select(ITEM_ID, TS, PRICE)]
        if self.seen is not None:  # carry earlier chunks' aggregate as three rows per item
            frames += [
                self.seen.select(ITEM_ID, pl.col(FIRST_SEEN).alias(TS), pl.lit(None).alias(PRICE)),
                self.seen.select(ITEM_ID, pl.col(LAST_SEEN).alias(TS), pl.lit(None).alias(PRICE)),
                self.seen.select(ITEM_ID, pl.col("__price_ts").alias(TS), PRICE),
            ]
        self.seen = _seen_items(pl.concat(frames, how="vertical_relaxed"))

    def derived_catalog(self) -> pl.DataFrame | None:
        """The items of the day as catalog rows (origin 'events'): first/last seen, the last
        price seen (null when none), and the title/category the adapter gave."""
        if self.seen is None or self.seen.height == 0:
            return None
        rows = self.seen.rename({"__price_ts": PRICE_SEEN_AT})
        if self.catalog is not None:
            rows = rows.join(self.catalog.select(ITEM_ID, TITLE, CATEGORY), on=ITEM_ID, how="left")
        return rows.with_columns(
            *(pl.lit(None, dtype=pl.Utf8).alias(c) for c in (TITLE, CATEGORY) if c not in rows),
            pl.lit(None, dtype=pl.Utf8).alias(BRAND),
            pl.lit("events").alias(CATALOG_ORIGIN),
        ).select(*CATALOG_FILE_COLUMNS, PRICE_SEEN_AT, FIRST_SEEN, LAST_SEEN, CATALOG_ORIGIN)


def _seen_items(events: pl.DataFrame) -> pl.DataFrame:
    """item_id, first_seen, last_seen, price (of the latest event with one), __price_ts."""
    priced = pl.col(PRICE).is_not_null()
    return (
        events.sort(TS, nulls_last=True, maintain_order=True)  # ties: the file's order
        .group_by(ITEM_ID, maintain_order=True)
        .agg(
            pl.col(TS).min().alias(FIRST_SEEN),
            pl.col(TS).max().alias(LAST_SEEN),
            pl.col(PRICE).filter(priced).last().alias(PRICE),
            pl.col(TS).filter(priced).last().alias("__price_ts"),
        )
        .sort(ITEM_ID)
    )


def day_bounds(day: dt.date) -> dict[str, dt.datetime]:
    """The contract parameters that pin a file's events to its day."""
    start = dt.datetime.combine(day, dt.time())
    return {"day_start": start, "day_end": start + dt.timedelta(days=1, microseconds=-1)}


def _without_erased(adapted: AdaptedFile, erased: pl.Series | None) -> AdaptedFile:
    """The adapted chunk less the rows of erased customers, counted as filtered `erased`
    (rows the adapter filtered for another reason keep that reason)."""
    if erased is None:
        return adapted
    rows = pl.DataFrame({ROW_INDEX: pl.arange(0, erased.len(), eager=True).cast(pl.Int64)})
    gone = rows.filter(erased)
    events = adapted.events.join(gone, on=ROW_INDEX, how="anti")
    rejected = adapted.rejected.join(gone, on=ROW_INDEX, how="anti")
    n = adapted.events.height - events.height + adapted.rejected.height - rejected.height
    # an erased customer's fee lines are no activity either (they stay filtered for their reason)
    activity = adapted.activity.join(gone, on=ROW_INDEX, how="anti")
    if n == 0:
        return dataclasses.replace(adapted, activity=activity)
    return dataclasses.replace(
        adapted,
        events=events,
        rejected=rejected,
        filtered={**adapted.filtered, ERASED: adapted.filtered.get(ERASED, 0) + n},
        defaulted=adapted.defaulted.join(gone, on=ROW_INDEX, how="anti"),
        activity=activity,
    )


def _stage_chunk(
    staged: _Staged,
    adapter: SourceAdapter,
    raw: pl.DataFrame,
    day: dt.date,
    params: dict,
    tally: _Tally,
    guard: IdGuard | None = None,
) -> None:
    """Adapt, validate and stage one chunk; rows keep their number in the whole file. The
    guard (privacy) pseudonymizes the customer column first and marks erased customers."""
    erased = None
    if guard is not None:
        raw, erased = guard.apply(raw, adapter.user_column, adapter.user_id)
    adapted = _without_erased(adapter.adapt(raw), erased)
    tally.ignored.extend(c for c in adapted.ignored_columns if c not in tally.ignored)
    outcome = validate_rows("events", adapted.events, day_bounds(day))
    bad = pl.concat([adapted.rejected, outcome.bad_rows])
    loaded = adapted.events.join(outcome.bad_rows, on=ROW_INDEX, how="anti")
    defaulted = adapted.defaulted.join(outcome.bad_rows, on=ROW_INDEX, how="anti")
    events = loaded.select(EVENT_COLUMNS)
    if raw.height != events.height + bad.height + sum(adapted.filtered.values()):
        raise RuntimeError(f"{params['source_file']}: row accounting broke; a bug in the adapter")
    staged.add("events", events)
    staged.add("quarantine", _payloads(raw, bad, tally.rows_in))
    tally.rows_in += raw.height
    tally.rows_loaded += events.height
    tally.filtered.update(adapted.filtered)
    tally.quarantined.update(bad[REASON].to_list())
    tally.defaulted.update(defaulted[REASON].to_list())
    tally.add_seen(events)
    if adapted.catalog is not None:
        tally.add_catalog(adapted.catalog)


# The day's rows of each table a swap replaces: one SQL file per table, so that no table name
# is formatted into SQL.
DAY_CLEARS = ("events_clear_day", "quarantine_clear_day", "ingestions_clear_day")


def _swap_day(
    con: duckdb.DuckDBPyConnection,
    staged: _Staged,
    result: IngestionResult,
    catalog: pl.DataFrame | None,
    published_root: Path | None,
    fault: str | None,
    new_items: bool = True,
) -> list[dt.date]:
    """Replace the day by its staged rows in one transaction: all of it or nothing. A rejected
    file loads no event; its bad rows stay visible in quarantine. Returns stale run dates."""
    params = {"source": result.source, "event_day": result.day, "source_file": result.file}
    key = {"source": result.source, "event_day": result.day}
    con.execute("begin transaction")
    try:
        for clear_day in DAY_CLEARS:
            con.execute(sql_text(clear_day), key)
        if result.status != "rejected":
            insert_parts(con, "events", staged.parts["events"], params)
        insert_parts(con, "quarantine", staged.parts["quarantine"], params)
        kill_if_armed(fault, "mid_ingest_swap")
        stale: list[dt.date] = []
        if result.status != "rejected":
            if catalog is not None:
                merge_catalog(con, catalog, new_items=new_items, what=result.file)
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
    columns: ColumnMapping | None = None,
    new_items: bool = True,
    guard: IdGuard | None = None,
) -> IngestionResult:
    """Ingest one day file: stream it in chunks, stage the validated rows as Parquet parts,
    then swap the day in with one transaction, so the day is replaced whole or not at all and
    memory does not grow with the file. Raises IngestError (one line naming the file) when it
    cannot.

    `published_root` (the recommendations folder) lets a late or replaced day flag the
    published run dates that read it as stale. `columns` renames the export's columns first
    (tasks/ingest/mapping.py). The items of the day's events are merged into the catalog
    (first/last seen, last price); `new_items=False` (the source has a catalog file) adds no
    item the catalog lacks, it only updates the ones it has. `guard` applies the privacy
    settings (pseudonyms, the erasure list); without one they are read from the settings."""
    adapter = adapter_for(source)
    day = day_of(path)
    root = staging_root(con)
    if guard is None:
        guard = store_guard(con, load_settings().privacy)
    leftovers = clean_staging(root)
    if leftovers:
        log.warning(
            "removed %d staged part(s) an interrupted ingestion left under %s",
            len(leftovers),
            root,
        )
    checksum = sha256_of(path)
    if columns is not None:  # the same file read through another mapping is other content
        checksum = hashlib.sha256(f"{checksum}:{columns.fingerprint()}".encode()).hexdigest()
    previous = _previous(con, source, day)
    loaded_before = previous is not None and previous[2] != "rejected"
    if loaded_before:
        if previous[0] == checksum:
            return IngestionResult(source, day, str(path), checksum, "unchanged")
        if not replace:
            raise IngestError(
                f"{path}: day {day} is already loaded from {previous[1]} with other content; "
                "pass --replace to reload the day",
                hint="pass --replace to reload the day",
            )
    params = {"source": source, "event_day": day, "source_file": str(path)}
    tally = _Tally()
    staged = _Staged(root / source / day.isoformat())
    try:
        for raw in iter_raw_chunks(path, chunk_bytes):
            if columns is not None:
                raw = columns.apply(raw, path)
            try:
                _stage_chunk(staged, adapter, raw, day, params, tally, guard)
            except IngestError as exc:
                raise IngestError(f"{path}: {exc}", hint=exc.hint) from exc
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
            defaulted_reasons=dict(sorted(tally.defaulted.items())),
        )
        kill_if_armed(fault, "before_ingest_swap")
        stale: list[dt.date] = []
        # A rejected replacement changes nothing: the previous load of the day stays as it was.
        if not (status == "rejected" and loaded_before):
            stale = _swap_day(
                con, staged, result, tally.derived_catalog(), published_root, fault, new_items
            )
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
    columns_file: Path | None = None,
    privacy: PrivacySettings | None = None,
) -> list[IngestionResult]:
    """Ingest the catalog file(s) beside the day files, then every day file under `landing`
    within [start, end], in day order (see `ingest_file` for the keyword arguments).

    `columns_file` is a column mapping (tasks/ingest/mapping.py); without it a
    `nightrec_columns.yml` beside the landing files is used when there is one. `privacy`
    (default: the settings') decides pseudonyms and holds the key. Raises NothingToIngest
    (before touching the store) when no day file is there to load."""
    check_range(start, end)
    adapter = adapter_for(source)  # fail on an unknown source before touching the store
    files = find_day_files(landing, start, end)
    if not files:
        raise explain_no_day_files(landing, start, end)
    mapping = find_mapping(landing, adapter.known_columns, columns_file)
    catalogs = find_catalog_files(landing)
    results: list[IngestionResult] = []
    privacy = load_settings().privacy if privacy is None else privacy
    with connect(db_path, memory_limit_mib=memory_limit_mib) as con:
        guard = bind_guard(con, privacy, db_path.parent)
        for catalog_path in catalogs:
            log.info(ingest_catalog_file(con, catalog_path).summary())
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
                columns=mapping,
                new_items=not catalogs,
                guard=guard,
            )
            results.append(result)
            if on_file is not None:
                on_file(done, len(files), result)
    return results


def merge_catalog(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, new_items: bool = True, what: str = ""
) -> None:
    """Merge catalog rows (one per item; CATALOG_FILE_COLUMNS, first/last seen, origin) into
    the `catalog` table through sql/catalog.sql: a file's values win over derived ones.
    `new_items=False` drops derived rows of items the catalog does not hold (with a warning)."""
    if rows.height == 0:
        return
    con.register("staged_catalog", rows.to_arrow())
    try:
        if not new_items:
            (unknown,) = con.execute(sql_text("catalog_unknown_items")).fetchone()
            if unknown:
                log.warning(
                    "%s: %d item(s) of the events are not in the catalog file; "
                    "they are left out of the catalog (no recommendation will name them)",
                    Path(what).name or "events",
                    unknown,
                )
        con.execute(sql_text("catalog"), {"new_items": new_items})
    finally:
        con.unregister("staged_catalog")


@dataclass(frozen=True)
class CatalogResult:
    """What happened to one catalog file; rows_in = rows_loaded + sum(skipped_reasons)."""

    file: str
    sha256: str
    status: str  # loaded | unchanged
    rows_in: int = 0
    rows_loaded: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        name = Path(self.file).name
        if self.status == "unchanged":
            return f"{name}: unchanged (already ingested, same checksum)"
        skipped = f" ({self.skipped_reasons} skipped)" if self.skipped_reasons else ""
        return f"{name}: {self.status}, {self.rows_loaded:,} of {self.rows_in:,} items{skipped}"


def _catalog_rows(path: Path) -> tuple[pl.DataFrame, int, Counter]:
    """A catalog file as merge rows (origin 'file'), its row count and the rows skipped."""
    raw = read_raw(path)
    if ITEM_ID not in raw.columns:
        raise IngestError(
            f"{path}: missing required column {ITEM_ID} for a catalog file "
            f"(found: {', '.join(raw.columns) or 'none'})",
            hint=f"a catalog file needs {ITEM_ID}; {', '.join(CATALOG_FILE_COLUMNS[1:])} are "
            "optional",
        )
    skipped: Counter = Counter()
    frame = raw.with_columns(
        (pl.col(c).str.strip_chars() if c in raw.columns else pl.lit(None, dtype=pl.Utf8)).alias(c)
        for c in CATALOG_FILE_COLUMNS
    ).with_columns(
        pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
        for c in CATALOG_FILE_COLUMNS
    )
    frame = frame.with_columns(pl.col(PRICE).cast(pl.Float64, strict=False).alias("__price"))
    bad_price = frame.filter(pl.col(PRICE).is_not_null() & pl.col("__price").is_null()).height
    if bad_price:
        skipped["not_a_number:price (price left null)"] = bad_price
    no_id = frame.filter(pl.col(ITEM_ID).is_null()).height
    if no_id:
        skipped["missing:item_id"] = no_id
    kept = frame.filter(pl.col(ITEM_ID).is_not_null())
    unique = kept.unique(subset=ITEM_ID, keep="last", maintain_order=True)
    if kept.height > unique.height:
        skipped["duplicate:item_id (last row kept)"] = kept.height - unique.height
    rows = unique.select(
        ITEM_ID,
        TITLE,
        CATEGORY,
        BRAND,
        pl.col("__price").alias(PRICE),
        pl.lit(None, dtype=pl.Datetime("us")).alias(PRICE_SEEN_AT),
        pl.lit(None, dtype=pl.Datetime("us")).alias(FIRST_SEEN),
        pl.lit(None, dtype=pl.Datetime("us")).alias(LAST_SEEN),
        pl.lit("file").alias(CATALOG_ORIGIN),
    )
    return rows, raw.height, skipped


def ingest_catalog_file(con: duckdb.DuckDBPyConnection, path: Path) -> CatalogResult:
    """Load one catalog file (item_id required; title, category, brand, price optional) into
    `catalog`, idempotently: the same file again (checksum) is a no-op, recorded in
    `catalog_ingestions`. Its values win over rows derived from events."""
    checksum = sha256_of(path)
    key = str(path.resolve())
    previous = con.execute(sql_text("catalog_ingestion_previous"), {"source_file": key}).fetchone()
    if previous is not None and previous[0] == checksum:
        return CatalogResult(str(path), checksum, "unchanged")
    rows, rows_in, skipped = _catalog_rows(path)
    # A price that did not parse leaves the row loaded (price null): not a skipped row.
    rows_skipped = sum(n for r, n in skipped.items() if not r.startswith("not_a_number"))
    result = CatalogResult(
        str(path),
        checksum,
        "loaded",
        rows_in,
        rows_in - rows_skipped,
        dict(sorted(skipped.items())),
    )
    con.execute("begin transaction")
    try:
        merge_catalog(con, rows)
        con.execute(
            sql_text("catalog_ingestions"),
            {
                "source_file": key,
                "sha256": checksum,
                "status": result.status,
                "rows_in": rows_in,
                "rows_loaded": result.rows_loaded,
                "skipped_reasons": json.dumps(result.skipped_reasons),
            },
        )
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        raise
    return result


def ingest_catalog(db_path: Path, path: Path) -> int:
    """Load a catalog file into the store at `db_path` (see `ingest_catalog_file`); returns
    the number of items loaded (0 when the file was already loaded)."""
    with connect(db_path) as con:
        return ingest_catalog_file(con, path).rows_loaded


def ingest_catalogs(db_path: Path, landing: Path) -> list[CatalogResult]:
    """Load the catalog file(s) beside the day files under `landing` (none: nothing to do)."""
    paths = find_catalog_files(landing)
    if not paths:
        return []
    with connect(db_path) as con:
        return [ingest_catalog_file(con, p) for p in paths]


def result_record(result: IngestionResult) -> dict:
    """A JSON-ready record of one ingestion, for manifests and Prefect artifacts."""
    record = asdict(result)
    record["day"] = result.day.isoformat()
    return record
