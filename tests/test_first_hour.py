"""What a new user met in the first hour (issue 19), each through the real CLI: one clear
error line and a hint, exit codes that tell the truth, progress while it works, no noise."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.synth.tiny import TINY_PROTOCOL_ENV, TINY_SHOP, stage_tiny_shop

ROOT = Path(__file__).resolve().parents[1]
RUN_DATE = TINY_SHOP.start + dt.timedelta(days=TINY_SHOP.days - 2)


def nightrec(*args: str, home: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={
            **os.environ,
            "NIGHTREC_HOME": str(home),
            "NIGHTREC_CONFIG": str(home / "none.yaml"),
            **(env or {}),
        },
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The user error as printed: exactly `error: ...` and `hint: ...`, no trace."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.stderr
    return lines


def test_1_run_before_any_ingest_fails_and_publishes_nothing(home: Path) -> None:
    result = nightrec("run", "--date", "2011-08-31", home=home)
    assert result.returncode == 2
    error, hint = error_lines(result)
    assert error == f"error: no store at {home}/nightrec.duckdb: nothing has been ingested"
    assert "nightrec ingest --source S --path DIR" in hint
    assert not (home / "recommendations").exists()


def test_2_a_stale_run_date_fails_naming_the_watermark(home: Path) -> None:
    stage_tiny_shop(home, home / "landing", RUN_DATE)
    late = RUN_DATE + dt.timedelta(days=107)
    result = nightrec("run", "--date", late.isoformat(), home=home)
    assert result.returncode == 2
    error, hint = error_lines(result)
    assert error.startswith(f"error: input is stale: the newest event is {RUN_DATE} ")
    assert error.endswith(f"107 days before the run date {late} (allowed: 2)")
    assert "NIGHTREC_SAFETY__ALLOW_STALE_INPUT=true" in hint


@pytest.mark.parametrize("command", [["quarantine", "list"], ["run", "--date", "2011-08-31"]])
def test_4_an_unwritable_home_is_one_line(tmp_path: Path, command: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = nightrec(*command, home=blocker / "home")
    assert result.returncode == 2
    error, hint = error_lines(result)
    assert str(blocker) in error and "Not a directory" in error
    assert hint == "hint: NIGHTREC_HOME must be a folder this user can write to"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2011-02-30", "2011-02-30 is not a calendar day: February 2011 has 28 days"),
        ("2011-13-01", "2011-13-01 is not a calendar day: there is no month 13"),
        ("31/08/2011", "'31/08/2011' is not a date in the form YYYY-MM-DD (2011-08-31)"),
    ],
)
def test_6_an_impossible_date_says_so(home: Path, value: str, message: str) -> None:
    result = nightrec("run", "--date", value, home=home)
    assert result.returncode == 2
    error, _ = error_lines(result)
    assert error == f"error: Invalid value for '--date': {message}"


@pytest.mark.flow
def test_7_10_run_shows_stage_progress_without_noise_and_a_degraded_run_exits_3(
    home: Path,
) -> None:
    stage_tiny_shop(home, home / "landing", RUN_DATE - dt.timedelta(days=1))
    env = {**TINY_PROTOCOL_ENV, "NIGHTREC_SAFETY__MAX_BAD_SHARE": "0.5"}
    landing = ["--landing", str(home / "landing"), "--source", "canonical"]
    first = nightrec("run", "--date", str(RUN_DATE), "--retrain", *landing, home=home, env=env)
    assert first.returncode == 0, first.stderr
    log = first.stderr
    for stage in ("ingest-day", "snapshot", "choose-model", "score", "check-top-k", "publish"):
        assert f"nightrec.progress: {stage}: done in " in log, log
    assert "nightrec.rank: training window 1/3" in log
    assert "nightrec.rank: lightgbm round " in log
    # 10: one format (HH:MM:SS LEVEL logger: message), no library chatter, no telemetry notice.
    for line in log.strip().splitlines():
        assert (line[:9].count(":") == 2 and " INFO " in line[8:16]) or " WARNING " in line, line
    assert "great_expectations" not in log and "Traceback" not in log
    assert "telemetry" not in log.lower() and "Starting temporary server" not in log

    model = next((home / "models").glob("lgbm-*")) / "model.txt"
    model.write_text("not a model\n")
    day2 = RUN_DATE + dt.timedelta(days=1)
    second = nightrec("run", "--date", str(day2), "--no-retrain", *landing, home=home, env=env)
    assert second.returncode == 3, second.stderr
    error, hint = second.stderr.strip().splitlines()[-2:]
    assert error.startswith(f"error: {day2} published degraded: fallback: lgbm-")
    assert error.endswith("scored with baseline-repurchase")
    assert hint.startswith("hint: read the run report; set NIGHTREC_ALLOW_DEGRADED=true")
    assert "degraded" in second.stdout  # the run's table still shows what was published
    allowed = nightrec(
        "run",
        "--date",
        str(day2),
        "--no-retrain",
        "--allow-degraded",
        *landing,
        home=home,
        env=env,
    )
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.flow
def test_8_a_flow_runs_logs_reach_the_prefect_api(
    prefect_harness: None, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    from flows.nightly import NightlyParams, nightly_flow

    for name, value in {"NIGHTREC_HOME": str(home), **TINY_PROTOCOL_ENV}.items():
        monkeypatch.setenv(name, value)
    stage_tiny_shop(home, home / "landing", RUN_DATE)
    manifest = nightly_flow(NightlyParams(run_date=RUN_DATE))
    APILogHandler().flush()  # the logs are sent in the background; wait for them
    flow_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(manifest["run_id"])]))
    with get_client(sync_client=True) as client:
        messages = [entry.message for entry in client.read_logs(flow_run, limit=200)]
    assert "choose-model: done in" in " ".join(messages), messages
    assert any(m.startswith("lightgbm round ") for m in messages), messages
