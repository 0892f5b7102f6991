"""Ingestion of what real feeds do: chunks, new columns, encodings, late days, replays."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_ingest import CANONICAL_HEADER, RETAIL_HEADER, RETAIL_ROWS, write

from tasks.ingest import adapters
from tasks.ingest.landing import IngestError
from tasks.ingest.load import ingest_file
from tasks.ingest.quarantine import quarantine_summary, replay_quarantine
from tasks.ingest.stale import stale_dates
from tasks.store import StoreError, connect

DAY_ROWS = [
    "u1,i1,view,2026-01-05 10:00:00,1,2.0,,s1",
    'u1,i1,purchase,2026-01-05 10:05:00,2,2.0,"o1\nsplit",s1',  # a quoted newline
    "u2,i2,click,2026-01-05 11:00:00,1,3.0,,s2",  # unknown event type
    "u2,i2,cart,05.01.2026 11:30,1,3.0,,s2",  # a timestamp format the adapter lacks
    "u3,i3,view,2026-01-05 12:00:00,1,3.0,,s3",
]


def _store_rows(db: Path) -> tuple[list, list, tuple]:
    with connect(db) as con:
        events = con.execute(
            "select user_id, item_id, event_type, order_id from events order by all"
        ).fetchall()
        quarantine = con.execute(
            "select row_number, reason, replayed_at is not null from quarantine order by 1"
        ).fetchall()
        counts = con.execute(
            "select rows_in, rows_loaded, rows_quarantined, rows_filtered, ignored_columns "
            "from ingestions"
        ).fetchone()
    return events, quarantine, counts


def test_tiny_chunks_give_exactly_what_one_chunk_gives(tmp_path: Path) -> None:
    path = write(tmp_path / "2026-01-05.csv", CANONICAL_HEADER, DAY_ROWS)
    outcomes = []
    for chunk_bytes in (1 << 20, 16):  # 16 bytes: every record is a chunk of its own
        db = tmp_path / f"db-{chunk_bytes}.duckdb"
        with connect(db) as con:
            ingest_file(con, "canonical", path, max_bad_share=1.0, chunk_bytes=chunk_bytes)
        outcomes.append(_store_rows(db))
    assert outcomes[0] == outcomes[1]
    events, quarantine, counts = outcomes[0]
    assert ("u1", "i1", "purchase", "o1\nsplit") in events and len(events) == 3
    assert quarantine == [
        (3, "contract:expect_column_values_to_be_in_set:event_type", False),
        (4, "unparseable:ts", False),
    ]
    assert counts[:4] == (5, 3, 2, 0)


def test_new_column_is_ignored_with_a_warning_and_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [f"{r},gold" for r in RETAIL_ROWS[:2]]
    path = write(tmp_path / "2010-12-01.csv", f"{RETAIL_HEADER},LoyaltyTier", rows)
    with connect(tmp_path / "db.duckdb") as con:
        result = ingest_file(con, "online-retail", path, max_bad_share=0.5)
        (recorded,) = con.execute("select ignored_columns from ingestions").fetchone()
    assert result.rows_loaded == 2 and result.ignored_columns == ["LoyaltyTier"]
    assert json.loads(recorded) == ["LoyaltyTier"]
    assert "ignoring unknown column(s) LoyaltyTier" in caplog.text


@pytest.mark.parametrize(
    ("encode", "name"),
    [
        (lambda t: t.encode("utf-16"), "2010-12-01.csv"),
        (lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"), "2010-12-01.csv"),
        (lambda t: gzip.compress(t.encode("latin-1")), "2010-12-01.csv.gz"),
    ],
    ids=["utf-16 with BOM", "utf-8 with BOM", "latin-1 gzip"],
)
def test_encodings_are_read(tmp_path: Path, encode, name: str) -> None:
    text = "\n".join([RETAIL_HEADER, RETAIL_ROWS[0].replace("WHITE", "CAFÉ")]) + "\n"
    path = tmp_path / name
    path.write_bytes(encode(text))
    with connect(tmp_path / "db.duckdb") as con:
        result = ingest_file(con, "online-retail", path, max_bad_share=0.5)
        (title,) = con.execute("select title from catalog").fetchone()
    assert (result.rows_loaded, title) == (1, "CAFÉ HANGING HEART")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02binary\x00", "binary content"),
        (gzip.compress(b"a,b\n1,2\n" * 100)[:-9], "not a valid gzip file"),
        (b"PK\x03\x04 a zip, not gzip", "not a valid gzip file"),
    ],
    ids=["binary", "truncated gzip", "not gzip"],
)
def test_unreadable_files_are_one_clear_line(tmp_path: Path, content: bytes, message: str) -> None:
    name = "2010-12-01.csv" if message == "binary content" else "2010-12-01.csv.gz"
    path = tmp_path / name
    path.write_bytes(content)
    with connect(tmp_path / "db.duckdb") as con, pytest.raises(IngestError) as info:
        ingest_file(con, "online-retail", path, max_bad_share=0.5)
        assert con.execute("select count(*) from ingestions").fetchone() == (0,)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_late_file_flags_published_days_that_read_it(tmp_path: Path) -> None:
    recs = tmp_path / "recommendations"
    for day in ("2026-01-04", "2026-01-06", "2026-01-07"):
        (recs / f"run_date={day}").mkdir(parents=True)
    (recs / ".staging-run_date=2026-01-08-x").mkdir()  # not published
    path = write(tmp_path / "2026-01-05.csv", CANONICAL_HEADER, DAY_ROWS[:1])
    db = tmp_path / "db.duckdb"
    with connect(db) as con:
        result = ingest_file(con, "canonical", path, max_bad_share=1.0, published_root=recs)
        again = ingest_file(con, "canonical", path, max_bad_share=1.0, published_root=recs)
        (reason,) = con.execute("select distinct reason from stale_runs").fetchone()
    # Runs for the 6th and 7th read events before their next day, so the 5th changes them.
    assert result.stale_runs == ["2026-01-06", "2026-01-07"]
    assert again.status == "unchanged" and again.stale_runs == []
    assert stale_dates(db) == [dt.date(2026, 1, 6), dt.date(2026, 1, 7)]
    assert reason == "day 2026-01-05 loaded late"


def test_replay_after_an_adapter_fix_loads_what_now_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "2026-01-05.csv", CANONICAL_HEADER, DAY_ROWS)
    db = tmp_path / "db.duckdb"
    with connect(db) as con:
        ingest_file(con, "canonical", path, max_bad_share=1.0)
    assert [(r["reason"], r["rows"]) for r in quarantine_summary(db)] == [
        ("contract:expect_column_values_to_be_in_set:event_type", 1),
        ("unparseable:ts", 1),
    ]
    # Before the fix nothing changes; the fix: the adapter learns the feed's date format.
    assert replay_quarantine(db)[0].loaded == 0
    monkeypatch.setattr(adapters, "TS_FORMATS", (*adapters.TS_FORMATS, "%d.%m.%Y %H:%M"))
    (result,) = replay_quarantine(db, reason="unparseable:ts")
    assert (result.replayed, result.loaded, result.filtered, result.still_quarantined) == (
        1,
        1,
        0,
        0,
    )
    events, quarantine, counts = _store_rows(db)
    assert ("u2", "i2", "cart", None) in events and len(events) == 4
    assert quarantine == [
        (3, "contract:expect_column_values_to_be_in_set:event_type", False),
        (4, "unparseable:ts", True),
    ]
    rows_in, loaded, quarantined, filtered, _ = counts
    assert (rows_in, loaded, quarantined, filtered) == (5, 4, 1, 0)
    assert replay_quarantine(db, reason="unparseable:ts") == []  # nothing open any more


def test_replay_of_a_rejected_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "2010-12-01.csv", RETAIL_HEADER, RETAIL_ROWS)
    db = tmp_path / "db.duckdb"
    with connect(db) as con, pytest.raises(IngestError):
        ingest_file(con, "online-retail", path, max_bad_share=0.1)
    with pytest.raises(IngestError, match="rejected file"):
        replay_quarantine(db)


def test_store_locked_by_another_process_is_one_clear_line(tmp_path: Path) -> None:
    db = tmp_path / "db.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True);"
            " time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError) as info, connect(db):
            pass
    finally:
        holder.kill()
        holder.wait()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"store {db} is locked by another process")
    assert "wait for the other nightrec run to finish" in message
    with connect(db) as con:  # released: usable again
        assert con.execute("select count(*) from events").fetchone() == (0,)
