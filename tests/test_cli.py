"""The command line: help for every command, and one clear line for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def nightrec(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in (
        "demo",
        "ingest",
        "run",
        "backfill",
        "models",
        "quarantine",
        "drill",
        "explain",
        "monitor",
    ):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "file is empty"),
        ("InvoiceNo,StockCode\n1,2\n", "missing required column(s) Quantity, InvoiceDate"),
    ],
)
def test_bad_landing_file_is_one_error_line_and_a_hint(
    home: Path, tmp_path: Path, content: str, expected: str
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "2010-12-01.csv").write_text(content)
    result = nightrec("ingest", "--source", "online-retail", "--path", str(landing), home=home)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "2010-12-01.csv" in lines[0]
    assert lines[1].startswith("hint: ")


def test_unknown_source_is_refused(home: Path, tmp_path: Path) -> None:
    result = nightrec("ingest", "--source", "nope", "--path", str(tmp_path), home=home)
    assert result.returncode == 2
    assert "unknown source 'nope'; choose one of: canonical, online-retail" in result.stderr


def test_an_unknown_device_is_one_error_line(home: Path) -> None:
    result = nightrec("run", "--date", "2026-01-01", "--device", "tpu", home=home)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: device: Input should be 'auto', 'cpu' or 'cuda'", result.stderr
    assert lines[1].startswith("hint: ")


def test_quarantine_list_by_reason_and_replay_of_a_rejected_file(
    home: Path, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "2026-01-05.csv").write_text(
        "user_id,item_id,event_type,ts,quantity,price\n"
        "u1,i1,view,2026-01-05 10:00:00,1,2.0\n"
        "u1,i1,click,2026-01-05 10:00:00,1,2.0\n"
    )
    ingest = nightrec("ingest", "--source", "canonical", "--path", str(landing), home=home)
    assert ingest.returncode == 2 and "50.0% of 2 rows broke the contract" in ingest.stderr
    listed = nightrec("quarantine", "list", "--rows", "1", home=home)
    assert listed.returncode == 0, listed.stderr
    assert "contract:expect_column_values_to_be_in_set:event_type" in listed.stdout
    assert "rejected" in listed.stdout and '"event_type":"click"' in listed.stdout
    replay = nightrec("quarantine", "replay", home=home)
    assert replay.returncode == 2
    lines = replay.stderr.strip().splitlines()
    assert len(lines) == 2 and "belong to rejected file(s)" in lines[0]


@pytest.mark.parametrize(
    "args",
    [("serve",), ("backfill", "--start", "2011-08-01", "--end", "2011-08-02", "--via-deployment")],
)
def test_commands_that_need_the_prefect_api_say_so_in_one_line(
    home: Path, args: tuple[str, ...]
) -> None:
    import os
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["NIGHTREC_OPS__SERVER_PORT"] = str(port)
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        f"error: no Prefect server answers at http://127.0.0.1:{port}/api (ConnectError); "
        "start one with `nightrec server` or set PREFECT_API_URL"
    )
    assert lines[1] == "hint: `nightrec server` in another terminal, then `nightrec serve`"


@pytest.mark.parametrize("command", [[], ["run"], ["tune"], ["ingest"], ["demo"], ["monitor"]])
def test_help_imports_no_pipeline_library(command: list[str]) -> None:
    probe = (
        "import sys\n"
        "from flows.cli import main\n"
        "sys.argv = ['nightrec', *sys.argv[1:], '--help']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "heavy = ('torch', 'lightgbm', 'polars', 'prefect', 'great_expectations', 'duckdb')\n"
        "print(','.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"--help imported {result.stderr.strip()}"
