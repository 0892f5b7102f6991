"""The DuckDB store: connections, the schema, and the SQL files of `sql/`.

Only task edges use this module; feature and model code receives Polars frames or paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import cache
from pathlib import Path

import duckdb

from tasks.errors import NightrecError
from tasks.locks import LockBusy, file_lock, store_lock_path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
# Runs for different dates may overlap; their short store sessions queue behind each other.
STORE_LOCK_TIMEOUT_S = 300.0


class StoreError(NightrecError, RuntimeError):
    """The store cannot be opened or used; the message says what to do."""

    hint = "check NIGHTREC_HOME and that no other nightrec run holds the store"


@cache
def sql_text(name: str) -> str:
    """The text of `sql/<name>.sql`; names come from code, never from user input."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise StoreError(f"missing SQL file {path}")
    return path.read_text()


@contextmanager
def connect(
    db_path: Path,
    read_only: bool = False,
    memory_limit_mib: int | None = None,
    lock_timeout_s: float = STORE_LOCK_TIMEOUT_S,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the store (creating it and its schema when writable) and close it afterwards.

    DuckDB admits one writing process per file and refuses readers beside it, so nightrec
    processes take a lock first (shared to read, exclusive to write) and wait their turn
    instead of failing. `memory_limit_mib` caps DuckDB's buffer pool (it spills to disk beyond
    it); without it DuckDB may cache up to 80% of the machine's memory, e.g. while a large day
    loads.
    """
    if read_only and not db_path.exists():
        raise StoreError(f"no store at {db_path}: run `nightrec ingest` or `nightrec demo` first")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    lock = file_lock(
        store_lock_path(db_path),
        shared=read_only,
        timeout_s=lock_timeout_s,
        what=f"store {db_path}",
    )
    with ExitStack() as stack:
        try:
            stack.enter_context(lock)
        except LockBusy as exc:
            raise StoreError(f"{exc} for over {lock_timeout_s:.0f} s; try again later") from exc
        yield stack.enter_context(_open(db_path, read_only, memory_limit_mib))


@contextmanager
def _open(
    db_path: Path, read_only: bool, memory_limit_mib: int | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    try:
        con = duckdb.connect(str(db_path), read_only=read_only)
    except duckdb.IOException as exc:
        # DuckDB allows one writing process per file; say so instead of a trace.
        raise StoreError(
            f"store {db_path} is locked by another process ({exc.args[0].splitlines()[0]}); "
            "wait for the other nightrec run to finish"
        ) from exc
    try:
        if memory_limit_mib is not None:
            con.execute(f"set memory_limit = '{int(memory_limit_mib)}MiB'")
        if not read_only:
            con.execute(sql_text("schema"))
        yield con
    finally:
        con.close()


COMPACT_PREFIX = ".compact-"


def compact(db_path: Path, lock_timeout_s: float = STORE_LOCK_TIMEOUT_S) -> int:
    """Rewrite the store into a fresh file and swap it in (rename), under the store lock.

    DuckDB keeps a deleted row's bytes in freed blocks after a delete, a checkpoint and even a
    VACUUM (measured: tests/test_privacy.py); a copy holds live rows only. Returns the new
    file's size. A crash leaves at most a `.compact-*` file beside the store, removed by the
    next compaction; the store itself is the old file or the new one, never half of either.
    """
    for leftover in db_path.parent.glob(f"{COMPACT_PREFIX}{db_path.name}-*"):
        leftover.unlink(missing_ok=True)
    fresh = db_path.with_name(f"{COMPACT_PREFIX}{db_path.name}-{os.getpid()}")
    lock = file_lock(store_lock_path(db_path), timeout_s=lock_timeout_s, what=f"store {db_path}")
    with ExitStack() as stack:
        try:
            stack.enter_context(lock)
        except LockBusy as exc:
            raise StoreError(f"{exc} for over {lock_timeout_s:.0f} s; try again later") from exc
        with _open(db_path, False, None):
            pass  # closing checkpoints: the old file holds every committed row, no WAL
        con = duckdb.connect()
        try:
            # ATTACH takes no bound parameter; the paths are the store's own files, quoted.
            con.execute(f"attach '{_quoted(db_path)}' as old (read_only)")
            con.execute(f"attach '{_quoted(fresh)}' as fresh")
            con.execute(sql_text("store_copy"))
        finally:
            con.close()
        with open(fresh, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(fresh, db_path)
        return db_path.stat().st_size


def _quoted(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")
