"""Locks, backfill planning and the run report: the pieces that make runs safe to overlap."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.locks import (
    LockBusy,
    RunInProgress,
    file_lock,
    holder_alive,
    run_date_lock,
    store_lock_path,
)
from tasks.ops.backfill_plan import plan_waves
from tasks.ops.run_report import render_run_report
from tasks.store import StoreError, connect

AUG = [dt.date(2011, 8, d) for d in range(1, 11)]


def test_without_models_the_first_day_and_every_seventh_retrain_alone() -> None:
    waves = plan_waves(AUG, lambda as_of: None, retrain_every_days=7)
    assert waves == [AUG[:1], AUG[1:7], AUG[7:8], AUG[8:]]


def test_a_registered_model_moves_the_next_retrain() -> None:
    # A model trained for run date Aug 1 (as_of Aug 2 00:00) serves Aug 2..7; Aug 8 retrains.
    registered = dt.datetime(2011, 8, 2)
    waves = plan_waves(
        AUG[1:], lambda as_of: registered if as_of > registered else None, retrain_every_days=7
    )
    assert waves == [AUG[1:7], AUG[7:8], AUG[8:]]


def test_an_exclusive_lock_is_refused_to_a_second_holder_and_names_the_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.lock"
    busy = pytest.raises(LockBusy, match=r"the thing is held by pid \d+ since")
    with file_lock(path, what="the thing"), busy, file_lock(path, what="the thing"):
        pass
    with file_lock(path):  # released
        pass


def test_readers_share_and_keep_a_writer_out(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with (
        file_lock(path, shared=True),
        file_lock(path, shared=True),
        pytest.raises(LockBusy),
        file_lock(path, timeout_s=0.3),
    ):
        pass


def test_a_second_run_for_the_same_date_is_refused(tmp_path: Path) -> None:
    day = dt.date(2011, 8, 1)
    refused = pytest.raises(RunInProgress, match="a run for 2011-08-01 is already in progress")
    with run_date_lock(tmp_path, day):
        with refused, run_date_lock(tmp_path, day):
            pass
        with run_date_lock(tmp_path, day + dt.timedelta(days=1)):  # other dates go on
            pass


HOLD_LOCK = """
import sys, time
from pathlib import Path
from tasks.locks import file_lock
with file_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_holder_leaves_no_stale_lock_and_a_waiting_store_user_gets_one_line(
    tmp_path: Path,
) -> None:
    db = tmp_path / "nightrec.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(store_lock_path(db))],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StoreError) as info, connect(db, lock_timeout_s=0.5):
            pass
        assert time.monotonic() - started >= 0.5
        assert f"store {db} is held by pid {holder.pid}" in str(info.value)
        assert "\n" not in str(info.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with connect(db, lock_timeout_s=0.5) as con:  # the kernel dropped the dead holder's lock
        assert con.execute("select 1").fetchone() == (1,)


def test_the_run_report_has_counts_by_source_and_the_validation_table() -> None:
    manifest = {
        "run_date": "2011-08-01",
        "rows": 30,
        "users": 3,
        "items": 12,
        "k": 10,
        "model_version": "lgbm-1",
        "retrained": True,
        "input_events": 1234,
        "model_choice": "promoted: beats repurchase",
        "rows_by_source": {"model": 25, "popularity_fallback": 5},
        "rows_by_reason": {"fallback": 5, "popular": 5, "repurchase": 20},
    }
    validation = {
        "k": 10,
        "as_of": "2011-07-18T00:00:00",
        "horizon_days": 30,
        "users": 3,
        "metrics": {
            "lightgbm": {
                "ndcg@10": 0.5,
                "recall@10": 0.25,
                "map@10": 0.125,
                "hitrate@10": 1.0,
                "precision@10": 0.1,
            },
        },
    }
    lines = render_run_report(manifest, validation).splitlines()
    assert "| 2011-08-01 | 30 | 3 | 12 | 10 | lgbm-1 | True | 1,234 |" in lines
    assert "| popularity_fallback | 5 |" in lines
    # The mix of reasons, most rows first (ties by name), with each one's share.
    at = lines.index("| reason | rows | share |")
    assert lines[at + 2 : at + 5] == [
        "| repurchase | 20 | 66.7% |",
        "| fallback | 5 | 16.7% |",
        "| popular | 5 | 16.7% |",
    ]
    assert "| lightgbm | 0.5000 | 0.2500 | 0.1250 | 1.0000 | 0.1000 |" in lines
    assert "Model choice: promoted: beats repurchase." in lines
    assert not any("Validation" in line for line in render_run_report(manifest, None).splitlines())


def test_the_run_report_says_which_kind_won_each_kinds_validation_ndcg_and_why() -> None:
    selection = {
        "mode": "auto",
        "winner": "blend",
        "why": "blend has the best validation NDCG (0.4375 vs lightgbm 0.4365)",
        "validation_ndcg": {"lightgbm": 0.4365, "neural": 0.4115, "blend": 0.4375},
        "validation_window": "2011-08-02T00:00:00",
        "network": {"why": "network trained: estimated 180 s on cpu within the budget"},
    }
    manifest = {
        "run_date": "2011-08-31",
        "rows": 0,
        "users": 0,
        "items": 0,
        "k": 10,
        "model_version": "blend-1",
        "retrained": True,
        "kind_selection": selection,
        "rows_by_source": {},
    }
    lines = render_run_report(manifest, None).splitlines()
    at = lines.index("## Model kind: blend (auto; tonight's retrain)")
    assert lines[at + 2] == "blend has the best validation NDCG (0.4375 vs lightgbm 0.4365)."
    assert lines[at + 4] == "network trained: estimated 180 s on cpu within the budget."
    assert lines[at + 6 : at + 11] == [
        "| kind | validation NDCG (window 2011-08-02) |",
        "| --- | --- |",
        "| lightgbm | 0.4365 |",
        "| neural | 0.4115 |",
        "| blend | 0.4375 |",
    ]
    # A night without a retrain shows the serving model's selection, from its meta.
    quiet = {**manifest, "retrained": False, "kind_selection": None}
    lines = render_run_report(quiet, None, None, selection).splitlines()
    assert "## Model kind: blend (auto; chosen when the serving model was trained)" in lines


def test_the_holder_probe_tells_a_live_run_from_a_dead_one(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    assert not holder_alive(path)  # never locked
    with file_lock(path):
        assert holder_alive(path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    path.write_text(f"pid {dead.stdout.strip()} since 2011-08-01T02:00:00")
    assert not holder_alive(path)
