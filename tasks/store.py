"""The DuckDB store: connections, the schema, and the SQL files of `sql/`.

Only task edges use this module; feature and model code receives Polars frames or paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import duckdb

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message says what to do."""


@cache
def sql_text(name: str) -> str:
    """The text of `sql/<name>.sql`; names come from code, never from user input."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise StoreError(f"missing SQL file {path}")
    return path.read_text()


@contextmanager
def connect(
    db_path: Path, read_only: bool = False, memory_limit_mib: int | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the store (creating it and its schema when writable) and close it afterwards.

    `memory_limit_mib` caps DuckDB's buffer pool (it spills to disk beyond it); without it
    DuckDB may cache up to 80% of the machine's memory, e.g. while a large day loads."""
    if read_only and not db_path.exists():
        raise StoreError(f"no store at {db_path}: run `nightrec ingest` or `nightrec demo` first")
    db_path.parent.mkdir(parents=True, exist_ok=True)
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
