"""kill -9 at named points of a nightly run: the previous output stays intact, the store stays
consistent, and the rerun publishes exactly what an uninterrupted run publishes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.constants import MANIFEST_NAME
from tasks.publish.writer import is_complete, partition_dir, publish, recover_partition
from tasks.safety.faults import kill_if_armed
from tasks.store import connect
from tasks.synth.tiny import TINY_MAX_BAD_SHARE, TINY_PROTOCOL_ENV, TINY_SHOP, stage_tiny_shop

SHOP = TINY_SHOP
RUN_DATE = SHOP.start + dt.timedelta(days=SHOP.days - 2)
PREVIOUS = RUN_DATE - dt.timedelta(days=1)
ENV = {**TINY_PROTOCOL_ENV, "NIGHTREC_MAX_BAD_SHARE": str(TINY_MAX_BAD_SHARE)}


def _home(root: Path) -> tuple[Path, Path]:
    home, landing = root / "home", root / "landing"
    stage_tiny_shop(home, landing, end=PREVIOUS - dt.timedelta(days=1))
    return home, landing


def _nightly(home: Path, landing: Path, day: dt.date) -> dict:
    from flows.nightly import NightlyParams, nightly_flow

    return nightly_flow(
        NightlyParams(run_date=day, landing_dir=str(landing), source="canonical", home=str(home))
    )


def _fingerprint(home: Path, day: dt.date) -> dict[str, str] | None:
    folder = partition_dir(home / "recommendations", day)
    if not folder.exists():
        return None
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _recs(home: Path, day: dt.date) -> pl.DataFrame:
    folder = partition_dir(home / "recommendations", day)
    return pl.read_parquet(folder / "*.parquet").drop("run_id")


def _killed_run(home: Path, landing: Path, point: str) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        **ENV,
        "NIGHTREC_HOME": str(home),
        "NIGHTREC_SAFETY__FAULT": point,
        "PREFECT_API_URL": PREFECT_API_URL.value(),  # the test's Prefect server: no startup
    }
    args = ["run", "--date", RUN_DATE.isoformat(), "--landing", str(landing)]
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--source", "canonical"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _store_is_consistent(home: Path) -> None:
    with connect(home / "nightrec.duckdb") as con:
        rows = con.execute(
            "select i.event_day, i.rows_loaded, i.rows_quarantined, "
            "(select count(*) from events e where e.event_day = i.event_day), "
            "(select count(*) from quarantine q where q.event_day = i.event_day) "
            "from ingestions i"
        ).fetchall()
    assert rows and all(r[1] == r[3] and r[2] == r[4] for r in rows)


@pytest.mark.flow
def test_kill_9_after_ingest_mid_scoring_mid_publish(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    home, landing = _home(tmp_path / "crashed")
    _nightly(home, landing, PREVIOUS)
    yesterday = _fingerprint(home, PREVIOUS)
    # The reference: the same state, run on without interruption (a copy saves a setup).
    ref_home = tmp_path / "reference"
    shutil.copytree(home, ref_home)
    reference = _nightly(ref_home, landing, RUN_DATE)
    for point in ("after_ingest", "mid_scoring", "mid_publish"):
        before = _fingerprint(home, RUN_DATE)  # None until the first rerun published the day
        killed = _killed_run(home, landing, point)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert f"fault injection: SIGKILL at {point}" in killed.stderr
        assert _fingerprint(home, PREVIOUS) == yesterday
        assert _fingerprint(home, RUN_DATE) == before
        _store_is_consistent(home)

        rerun = _nightly(home, landing, RUN_DATE)
        assert is_complete(home / "recommendations", RUN_DATE)
        assert_frame_equal(_recs(home, RUN_DATE), _recs(ref_home, RUN_DATE))
        for key in ("rows", "users", "model_version", "k", "input_events", "input_watermark"):
            assert rerun[key] == reference[key], (point, key)
        checks = json.loads(Path(rerun["validation_report"]).read_text())
        assert checks["success"] and set(checks["stages"]) == {"features", "top_k"}
    # The killed runs left no half-written partition behind.
    leftovers = [p.name for p in (home / "recommendations").iterdir() if p.name.startswith(".")]
    assert [n for n in leftovers if not n.startswith(".staging-")] == []


def test_a_swap_killed_between_its_renames_is_undone(tmp_path: Path) -> None:
    root, day = tmp_path / "recommendations", dt.date(2026, 1, 5)
    recs = pl.DataFrame(
        {"user_id": ["u1"], "item_id": ["i1"], "rank": [1], "score": [1.0], "source": ["model"]}
    ).with_columns(
        reason=pl.lit("popular"), reason_detail=pl.lit("#1"), reason_features=pl.lit(None)
    )
    publish(recs, root, day, "run-1", "m1", 1, {})
    final = partition_dir(root, day)
    manifest = (final / MANIFEST_NAME).read_text()
    # The state a SIGKILL between the two renames leaves: the old partition parked, no new one.
    os.replace(final, final.with_name(f".old-{final.name}"))
    assert not is_complete(root, day)
    assert recover_partition(root, day) == f"restored {final.name} from .old-{final.name}"
    assert (final / MANIFEST_NAME).read_text() == manifest and is_complete(root, day)
    assert recover_partition(root, day) is None
    # A new partition that did arrive wins over a parked old one.
    shutil.copytree(final, final.with_name(f".old-{final.name}"))
    assert recover_partition(root, day) == f"removed leftover .old-{final.name}"


def test_fault_hook_does_nothing_unless_armed_at_that_point() -> None:
    kill_if_armed(None, "mid_publish")
    kill_if_armed("mid_scoring", "mid_publish")
    with pytest.raises(ValueError, match="unknown fault point"):
        kill_if_armed(None, "nowhere")
