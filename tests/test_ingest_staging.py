"""Staged ingestion keeps a day all-or-nothing: chunks are staged as Parquet parts outside any
transaction and swapped in by one transaction, so a failure or a kill before or inside the
swap leaves the store as it was, and the rerun cleans the leftovers and loads the day once."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_ingest import CANONICAL_HEADER, write

from tasks.ingest import load
from tasks.ingest.load import ingest_file, ingest_landing, staging_root
from tasks.store import connect

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 1, 5)
CHUNK_BYTES = 200  # a few rows per chunk: many staged parts per file


def _rows(version: str, n: int) -> list[str]:
    """n canonical rows tagged by `version`; every seventh has an unknown event type."""
    return [
        f"{version}-u{i % 5},i{i % 3},{'click' if i % 7 == 3 else 'view'},"
        f"2026-01-05 10:{i % 60:02d}:00,{1 + i % 4},{i}.5,,s{i}"
        for i in range(n)
    ]


def _expected(version: str, n: int) -> list[tuple]:
    """The events a file of `_rows(version, n)` must load: every row but the bad ones."""
    return sorted(
        (f"{version}-u{i % 5}", f"i{i % 3}", "view", 1 + i % 4, i + 0.5)
        for i in range(n)
        if i % 7 != 3
    )


def _state(db: Path) -> dict:
    """The day as the store holds it: events, quarantine and bookkeeping, with a digest."""
    with connect(db) as con:
        events = con.execute(
            "select user_id, item_id, event_type, quantity, price from events "
            "where event_day = ? order by all",
            [DAY],
        ).fetchall()
        quarantine = con.execute(
            "select row_number, reason from quarantine where event_day = ? order by all", [DAY]
        ).fetchall()
        ingestion = con.execute(
            "select sha256, status, rows_in, rows_loaded, rows_quarantined from ingestions "
            "where event_day = ?",
            [DAY],
        ).fetchall()
    digest = hashlib.sha256(repr(events).encode()).hexdigest()
    return {"events": events, "digest": digest, "quarantine": quarantine, "ingestion": ingestion}


def staging_root_of(db: Path) -> Path:
    with connect(db) as con:
        return staging_root(con)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def days(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A store holding the day from file A (40 rows), and file B (60 rows) to replace it."""
    db = tmp_path / "home" / "nightrec.duckdb"
    first = write(tmp_path / "a" / f"{DAY}.csv", CANONICAL_HEADER, _rows("a", 40))
    second = write(tmp_path / "b" / f"{DAY}.csv", CANONICAL_HEADER, _rows("b", 60))
    ingest_landing(db, "canonical", first, max_bad_share=0.5, chunk_bytes=CHUNK_BYTES)
    state = _state(db)
    assert state["events"] == _expected("a", 40)
    assert state["ingestion"] == [(_sha(first), "loaded", 40, 34, 6)]
    return db, first, second


def _assert_replaced_once(db: Path, second: Path) -> None:
    state = _state(db)
    assert state["events"] == _expected("b", 60)  # each row once: no leftover of A or a retry
    assert [n for n, _ in state["quarantine"]] == [i + 1 for i in range(60) if i % 7 == 3]
    assert state["ingestion"] == [(_sha(second), "replaced", 60, 51, 9)]
    assert not staging_root_of(db).exists()


def test_staging_sits_in_the_home_beside_the_store_and_is_removed_after(days) -> None:
    db, _, second = days
    assert staging_root_of(db) == db.parent / "staging" / "ingest-nightrec"
    ingest_landing(
        db, "canonical", second, max_bad_share=0.5, replace=True, chunk_bytes=CHUNK_BYTES
    )
    _assert_replaced_once(db, second)


def test_failure_between_staging_and_swap_leaves_the_day_and_rerun_loads_it_once(
    days, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _, second = days
    before = _state(db)
    staged_parts: list[int] = []

    def failing_swap(con, staged, *args, **kwargs):
        staged_parts.append(len(staged.parts["events"]))
        raise RuntimeError("injected failure before the swap")

    monkeypatch.setattr(load, "_swap_day", failing_swap)
    with pytest.raises(RuntimeError, match="injected"):
        ingest_landing(
            db, "canonical", second, max_bad_share=0.5, replace=True, chunk_bytes=CHUNK_BYTES
        )
    assert staged_parts and staged_parts[0] > 1  # the whole file was staged, in many parts
    assert _state(db) == before
    assert not staging_root_of(db).exists()  # a failure cleans up after itself

    monkeypatch.undo()
    ingest_landing(
        db, "canonical", second, max_bad_share=0.5, replace=True, chunk_bytes=CHUNK_BYTES
    )
    _assert_replaced_once(db, second)


def test_failure_inside_the_swap_rolls_the_whole_day_back(
    days, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _, second = days
    before = _state(db)

    def failing_record(con, result):  # the last write of the swap, after events and quarantine
        raise RuntimeError("injected failure inside the swap")

    monkeypatch.setattr(load, "_record_ingestion", failing_record)
    with pytest.raises(RuntimeError, match="injected"):
        ingest_landing(
            db, "canonical", second, max_bad_share=0.5, replace=True, chunk_bytes=CHUNK_BYTES
        )
    assert _state(db) == before
    monkeypatch.undo()
    ingest_landing(
        db, "canonical", second, max_bad_share=0.5, replace=True, chunk_bytes=CHUNK_BYTES
    )
    _assert_replaced_once(db, second)


KILL = """
import sys
from pathlib import Path
from tasks.ingest.load import ingest_landing
ingest_landing(Path(sys.argv[1]), "canonical", Path(sys.argv[2]), max_bad_share=0.5,
               replace=True, chunk_bytes=int(sys.argv[3]), fault=sys.argv[4])
"""


@pytest.mark.parametrize("point", ["mid_ingest", "before_ingest_swap", "mid_ingest_swap"])
def test_kill_9_while_staging_or_swapping_leaves_the_day_and_rerun_cleans_up(
    days, point: str, caplog: pytest.LogCaptureFixture
) -> None:
    db, _, second = days
    before = _state(db)
    killed = subprocess.run(
        [sys.executable, "-c", KILL, str(db), str(second), str(CHUNK_BYTES), point],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert f"fault injection: SIGKILL at {point}" in killed.stderr
    assert _state(db) == before  # the previous load of the day, exactly
    leftover = sorted(staging_root_of(db).rglob("*.parquet"))
    assert leftover and all(p.parent.name == DAY.isoformat() for p in leftover)
    # mid_ingest dies after the first chunk; the others after staging all 60 rows.
    staged_files = {p.name.split("-")[0] for p in leftover}
    assert "events" in staged_files

    with caplog.at_level(logging.WARNING, logger="nightrec.ingest"):
        ingest_landing(
            db, "canonical", second, max_bad_share=0.5, replace=True, chunk_bytes=CHUNK_BYTES
        )
    assert f"removed {len(leftover)} staged part(s)" in caplog.text
    _assert_replaced_once(db, second)


def test_leftover_staging_is_removed_even_when_the_next_file_is_unchanged(days) -> None:
    db, first, _ = days
    root = staging_root_of(db)
    (root / "canonical" / "2026-01-04").mkdir(parents=True)
    (root / "canonical" / "2026-01-04" / "events-000000.parquet").write_bytes(b"killed")
    with connect(db) as con:
        result = ingest_file(con, "canonical", first, max_bad_share=0.5)
    assert result.status == "unchanged"
    assert not root.exists()
    assert _state(db)["events"] == _expected("a", 40)
