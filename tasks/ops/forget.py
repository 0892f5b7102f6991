"""`nightrec forget`: erase customers from every place nightrec keeps data under NIGHTREC_HOME.

The places (found from sql/schema.sql and the home layout of tasks/settings.py):

- store `events` (user_id): rows deleted;
- store `quarantine` (raw rows as JSON, the adapter's customer column): rows deleted;
- store `ingestions` (counts only): the erased rows move to `filtered` under `erased`;
- the store file (freed blocks keep deleted rows' bytes): rewritten into a fresh file;
- `staging/` (parts a killed ingestion left) and `work/` (snapshots a killed run or
  evaluation left): removed;
- `tuning/<study>/data/` (a study's cached windows: candidates, features, truth): removed,
  rebuilt when the study resumes;
- `recommendations/run_date=D/` (published rows): every part rewritten, manifest updated,
  swapped in by rename like a publish;
- `validation/run_date=D/*.json` (samples of rows that broke a rule): values equal to an id
  replaced by `[erased]`;
- `models/` (trained on their events; a network also embeds hashed customer ids): marked,
  never served again; the next run retrains.

Then the erasure log (`erasures`: when, how many rows from where, a keyed hash of each id)
is written, the store is compacted, and every file under NIGHTREC_HOME is scanned for the ids'
bytes (ids of MIN_SCAN_CHARS characters or more, and pseudonyms): a file that still holds one
makes `forget` fail, naming it (landing files the shop keeps under NIGHTREC_HOME, for
example). Customers unknown to the store are not an error: their
hash joins the erasure list (an erasure request may precede their data), and the result says
0 rows for them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import mmap
import os
import shutil
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from tasks.ingest.adapters import adapter_for
from tasks.ingest.load import clean_staging, staging_root
from tasks.locks import LockBusy, RunInProgress, file_lock
from tasks.privacy.guard import ERASED, ERASURE_KEY, check_key, check_mode
from tasks.privacy.keys import PrivacyError, PrivacyKey, erasure_key, pseudonym_key
from tasks.publish.writer import partition_dates, recover_partition, rewrite_partition
from tasks.rank import registry
from tasks.settings import Settings
from tasks.store import compact, connect, sql_text

log = logging.getLogger("nightrec.privacy")
ERASED_VALUE = "[erased]"
EVENTS, QUARANTINE = "events", "quarantine"
# The final byte scan looks for ids at least this long: a shorter one (`17850`) also matches
# inside unrelated numbers and names, so it would fail every erasure for nothing.
MIN_SCAN_CHARS = 8


class ForgetError(PrivacyError):
    hint = "give customer ids with --customer ID (repeatable) or --file IDS (one per line)"


class ForgetIncomplete(PrivacyError):
    hint = (
        "remove or rewrite the named files (landing files are the shop's input: keep them "
        "outside NIGHTREC_HOME), then run the same forget again"
    )


@dataclass
class ForgetResult:
    """What one erasure request removed. `customers` is keyed by the id as given (shown to
    the operator who typed it, never written to a file)."""

    request_id: str
    erased_at: str
    customers: dict[str, Counter] = field(default_factory=dict)  # id -> place -> rows
    files: Counter = field(default_factory=Counter)  # request-wide places -> files/folders
    models_retired: list[str] = field(default_factory=list)
    store_bytes: tuple[int, int] | None = None  # the store file before / after compaction
    byte_scanned: int = 0  # ids (and pseudonyms) the final byte scan looked for
    not_scanned: int = 0  # ids too short for a byte scan to mean anything (MIN_SCAN_CHARS)

    def rows(self, customer: str) -> int:
        return sum(self.customers[customer].values())


def read_ids(customers: list[str], file: Path | None) -> list[str]:
    """The ids of a request: `--customer` values and a file's lines (blank lines and `#`
    comments skipped), stripped, each once, in order."""
    ids = list(customers)
    if file is not None:
        try:
            lines = file.read_text().splitlines()
        except OSError as exc:
            raise ForgetError(f"cannot read {file}: {exc.strerror}") from exc
        ids += [line for line in lines if not line.strip().startswith("#")]
    ids = list(dict.fromkeys(i.strip() for i in ids if i.strip()))
    if not ids:
        raise ForgetError("no customer id given")
    return ids


@contextmanager
def no_run_in_progress(home: Path) -> Iterator[None]:
    """Hold every run date's lock: a run in progress is refused here (its snapshot could put
    the customers back), and no run of those dates starts until the erasure is done."""
    with ExitStack() as stack:
        for path in sorted((home / "locks").glob("run_date=*.lock")):
            try:
                stack.enter_context(file_lock(path, what=path.stem))
            except LockBusy as exc:
                raise RunInProgress(
                    f"{exc}: a nightly run is in progress; forget after it ends"
                ) from None
        yield


def forget(settings: Settings, customers: list[str]) -> ForgetResult:
    """Erase `customers` (the shop's ids) everywhere under NIGHTREC_HOME; see the module."""
    privacy = settings.privacy
    pseudonyms = pseudonym_key(privacy)
    key = erasure_key(privacy, settings.home, create=True)
    assert key is not None
    # The ids as the store holds them: pseudonyms when the store is pseudonymized.
    stored = {c: pseudonyms.pseudonym(c) if pseudonyms else c for c in customers}
    by_stored = {s: c for c, s in stored.items()}
    now = dt.datetime.now()
    result = ForgetResult(uuid.uuid4().hex[:12], now.isoformat(timespec="seconds"))
    result.customers = {c: Counter() for c in customers}
    with no_run_in_progress(settings.home):
        first_seen = _erase_store(settings, key, stored, by_stored, result)
        _erase_files(settings, list(by_stored), by_stored, result)
        result.models_retired = _retire_models(settings, first_seen, result)
        _log_erasure(settings, key, stored, result)
        if settings.db_path.exists():
            before = settings.db_path.stat().st_size
            result.store_bytes = (before, compact(settings.db_path))
    every = list(dict.fromkeys([*customers, *by_stored]))
    needles = [i for i in every if len(i) >= MIN_SCAN_CHARS]
    result.byte_scanned, result.not_scanned = len(needles), len(every) - len(needles)
    leftovers = residue(settings.home, needles)
    if leftovers:
        raise ForgetIncomplete(
            f"the erased ids' bytes are still in {len(leftovers)} file(s) under "
            f"{settings.home}: {', '.join(str(p) for p in leftovers[:5])}"
        )
    return result


def _erase_store(
    settings: Settings,
    key: PrivacyKey,
    stored: dict[str, str],
    by_stored: dict[str, str],
    result: ForgetResult,
) -> dt.datetime | None:
    """Delete the customers' events and quarantined rows (and what a killed ingestion staged)
    in one transaction; the day counts move to `filtered`. Returns their first event's time."""
    if not settings.db_path.exists():
        return None
    user_ids = list(by_stored)
    with connect(settings.db_path) as con:
        check_mode(con, settings.privacy)
        check_key(con, ERASURE_KEY, key, "erasure hashes")
        for part in clean_staging(staging_root(con)):
            result.files["staging parts"] += 1
            log.info("removed staged part %s", part)
        per_day = con.execute(sql_text("events_erase_counts"), {"user_ids": user_ids}).fetchall()
        first_seen = min((row[4] for row in per_day), default=None)
        doomed = _quarantined_rows(con, set(user_ids))
        loaded: Counter = Counter()
        quarantined: Counter = Counter()
        for user, source, day, n, _ in per_day:
            result.customers[by_stored[user]][EVENTS] += n
            loaded[(source, day)] += n
        for source, day, _, user, replayed in doomed.iter_rows():
            result.customers[by_stored[user]][QUARANTINE] += 1
            if not replayed:  # a replayed row's event counted as loaded, erased with events
                quarantined[(source, day)] += 1
        con.execute("begin transaction")
        try:
            con.execute(sql_text("events_erase"), {"user_ids": user_ids})
            if doomed.height:
                con.register("staged_quarantine_erase", doomed.to_arrow())
                try:
                    con.execute(sql_text("quarantine_erase"))
                finally:
                    con.unregister("staged_quarantine_erase")
            for source, day in sorted(set(loaded) | set(quarantined)):
                _recount_day(con, source, day, loaded[(source, day)], quarantined[(source, day)])
            con.execute("commit")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("rollback")
            raise
    return first_seen


def _quarantined_rows(con: duckdb.DuckDBPyConnection, user_ids: set[str]) -> pl.DataFrame:
    """Quarantined rows whose customer column (the adapter's, normalised as it loads) is one
    of `user_ids`: (source, event_day, row_number, user, replayed)."""
    rows = con.execute(
        sql_text("quarantine_erase_candidates"), {"user_ids": sorted(user_ids)}
    ).fetchall()
    keep = []
    for source, day, number, _, payload, replayed in rows:
        adapter = adapter_for(source)
        raw = json.loads(payload).get(adapter.user_column)
        if raw is None:
            continue
        user = pl.select(adapter.user_id(pl.lit(str(raw)))).item()
        if user in user_ids:
            keep.append((source, day, number, user, replayed))
    schema = {
        "source": pl.Utf8,
        "event_day": pl.Date,
        "row_number": pl.Int64,
        "user": pl.Utf8,
        "replayed": pl.Boolean,
    }
    return pl.DataFrame(keep, schema=schema, orient="row")


def _recount_day(
    con: duckdb.DuckDBPyConnection, source: str, day: dt.date, loaded: int, quarantined: int
) -> None:
    """Move a day's erased rows from loaded / quarantined to filtered (`erased`)."""
    key = {"source": source, "event_day": day}
    record = con.execute(sql_text("ingestion_reasons"), key).fetchone()
    if record is None:
        return
    filtered = Counter(json.loads(record[0] or "{}"))
    filtered[ERASED] += loaded + quarantined
    open_reasons = dict(con.execute(sql_text("quarantine_open_reasons"), key).fetchall())
    con.execute(
        sql_text("ingestions_erased"),
        {
            **key,
            "loaded": loaded,
            "quarantined": quarantined,
            "filtered_reasons": json.dumps(dict(sorted(filtered.items()))),
            "quarantine_reasons": json.dumps(open_reasons),
        },
    )


def _erase_files(
    settings: Settings, user_ids: list[str], by_stored: dict[str, str], result: ForgetResult
) -> None:
    """Leftover work folders and tuning caches go; published partitions are rewritten;
    validation samples naming the customers are replaced."""
    work = settings.work_dir
    if work.is_dir():
        for folder in sorted(work.iterdir()):
            shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
            result.files["work folders"] += 1
    if settings.tuning_dir.is_dir():
        for study in sorted(p for p in settings.tuning_dir.iterdir() if p.is_dir()):
            for cache in [study / "data", *study.glob(".data.tmp-*")]:
                if cache.is_dir():
                    shutil.rmtree(cache)
                    result.files["tuning caches"] += 1
    root = settings.recommendations_dir
    if root.is_dir():
        for parked in root.glob(".old-run_date=*"):  # a swap killed half-way: undo it first
            recover_partition(root, dt.date.fromisoformat(parked.name.split("=", 1)[1]))
        for stale in root.glob(".staging-*"):  # a killed publish's leftovers
            shutil.rmtree(stale, ignore_errors=True)
    note = {"request_id": result.request_id, "erased_at": result.erased_at}
    for day in partition_dates(root):
        removed = rewrite_partition(root, day, user_ids, note)
        for user, n in removed.items():
            result.customers[by_stored[user]][f"recommendations/run_date={day}"] += n
    for path in sorted(settings.validation_dir.rglob("*.json")):
        if _scrub_json(path, set(user_ids) | set(by_stored.values())):
            result.files["validation reports scrubbed"] += 1


def _scrub(value: Any, ids: set[str]) -> tuple[Any, bool]:
    if isinstance(value, str):
        return (ERASED_VALUE, True) if value in ids else (value, False)
    if isinstance(value, list):
        pairs = [_scrub(v, ids) for v in value]
        return [v for v, _ in pairs], any(c for _, c in pairs)
    if isinstance(value, dict):
        pairs = {k: _scrub(v, ids) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(c for _, c in pairs.values())
    return value, False


def _scrub_json(path: Path, ids: set[str]) -> bool:
    """Replace JSON string values equal to an id by `[erased]` (atomically)."""
    text = path.read_text()
    if not any(i in text for i in ids):
        return False
    doc, changed = _scrub(json.loads(text), ids)
    if changed:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=2, default=str))
        os.replace(tmp, path)
    return changed


def _retire_models(
    settings: Settings, first_seen: dt.datetime | None, result: ForgetResult
) -> list[str]:
    """Mark every model whose training could see the customers' events (as_of after their
    first event): it never serves again, and the next run retrains."""
    if first_seen is None:
        return []
    retired = []
    for record in registry.list_models(settings.models_dir):
        if record.as_of > first_seen:
            registry.mark_erased(
                settings.models_dir, record.version, result.request_id, result.erased_at
            )
            retired.append(record.version)
    return retired


def _log_erasure(
    settings: Settings, key: PrivacyKey, stored: dict[str, str], result: ForgetResult
) -> None:
    """The erasure log: per customer and place the rows removed, under a keyed hash of the
    id (a customer with none gets one row, `none`, so the erasure list holds them too); the
    request-wide places with a null hash."""
    rows = []
    for customer in stored:
        places = result.customers[customer] or Counter({"none": 0})
        digest = key.erasure_hash(customer)
        rows += [(digest, place, n) for place, n in sorted(places.items())]
    rows += [(None, place, n) for place, n in sorted(result.files.items())]
    rows += [(None, f"model retired: {v}", 0) for v in result.models_retired]
    frame = pl.DataFrame(
        rows, schema={"id_hash": pl.Utf8, "place": pl.Utf8, "rows": pl.Int64}, orient="row"
    )
    with connect(settings.db_path) as con:
        con.register("staged_erasures", frame.to_arrow())
        try:
            con.execute(sql_text("erasures"), {"request_id": result.request_id})
        finally:
            con.unregister("staged_erasures")


def residue(home: Path, needles: list[str], skip: tuple[str, ...] = ()) -> list[Path]:
    """Files under `home` whose bytes contain any of `needles` (a plain byte scan: text,
    uncompressed Parquet pages and DuckDB blocks show an id as is)."""
    patterns = [n.encode() for n in needles if n]
    hits = []
    for path in sorted(p for p in home.rglob("*") if p.is_file() and not p.is_symlink()):
        if any(part in skip for part in path.parts) or path.stat().st_size == 0:
            continue
        if _holds(path, patterns):
            hits.append(path)
    return hits


def _holds(path: Path, patterns: list[bytes]) -> bool:
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return any(m.find(p) != -1 for p in patterns)


def erased_summary(result: ForgetResult) -> list[dict[str, Any]]:
    """One row per customer for the CLI's table."""
    out = []
    for customer, places in result.customers.items():
        published = sum(n for p, n in places.items() if p.startswith("recommendations/"))
        out.append(
            {
                "customer": customer,
                "events": places.get(EVENTS, 0),
                "quarantined": places.get(QUARANTINE, 0),
                "published rows": published,
                "total": result.rows(customer),
            }
        )
    return out


def per_partition(result: ForgetResult) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for places in result.customers.values():
        for place, n in places.items():
            if place.startswith("recommendations/"):
                totals[place] += n
    return dict(totals)
