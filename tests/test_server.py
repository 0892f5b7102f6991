"""The deployments against a real Prefect server on loopback, served by `nightrec serve`.

One module-scoped stack (server + serve, ~30 s to start) on a tiny synthetic shop; the tests
trigger the nightly deployment through the API and through `nightrec backfill --via-deployment`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import pytest
from local_stack import REPO, LocalStack, local_stack, wait_until

from tasks.locks import run_date_lock
from tasks.publish.writer import MANIFEST_NAME, partition_dir
from tasks.synth.tiny import TINY_K, TINY_PROTOCOL_ENV, TINY_SHOP, stage_tiny_shop

SHOP = TINY_SHOP
FIRST_DAY = SHOP.start + dt.timedelta(days=SHOP.days - 4)
K = TINY_K


@dataclass
class Stack:
    home: Path
    local: LocalStack

    @property
    def env(self) -> dict[str, str]:
        return self.local.env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("server")
    home = root / "home"
    landing = root / "landing"
    stage_tiny_shop(home, landing, end=FIRST_DAY - dt.timedelta(days=1))
    nightrec_env = {
        "NIGHTREC_HOME": str(home),
        "NIGHTREC_LANDING_DIR": str(landing),
        "NIGHTREC_SOURCE": "canonical",
        **TINY_PROTOCOL_ENV,
    }
    try:
        with local_stack(root, nightrec_env) as local:
            yield Stack(home, local)
    finally:
        for log in sorted((root / "logs").glob("*.log")):
            print(f"--- {log.name} ---\n{log.read_text()[-3000:]}")


def _api(stack: Stack, method: str, path: str, **kwargs) -> httpx.Response:
    response = stack.local.api(method, path, **kwargs)
    response.raise_for_status()
    return response


def _trigger(stack: Stack, day: dt.date, idempotency_key: str | None = None) -> str:
    deployment = _api(stack, "GET", "/deployments/name/nightly/nightly").json()
    body: dict = {"parameters": {"params": {"run_date": day.isoformat()}}}
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    return _api(
        stack, "POST", f"/deployments/{deployment['id']}/create_flow_run", json=body
    ).json()["id"]


def _final_state(stack: Stack, flow_run_id: str, timeout_s: float = 180) -> dict:
    def final() -> dict | None:
        state = _api(stack, "GET", f"/flow_runs/{flow_run_id}").json()["state"]
        return state if state and state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

    return wait_until(final, timeout_s, f"flow run {flow_run_id}")


def _published(home: Path, day: dt.date) -> tuple[pl.DataFrame, dict]:
    folder = partition_dir(home / "recommendations", day)
    return pl.read_parquet(folder / "*.parquet"), json.loads((folder / MANIFEST_NAME).read_text())


def test_two_triggers_for_one_date_make_one_flow_run_and_one_write(stack: Stack) -> None:
    key = f"nightly-{FIRST_DAY}"
    first, second = _trigger(stack, FIRST_DAY, key), _trigger(stack, FIRST_DAY, key)
    assert first == second
    state = _final_state(stack, first)
    assert state["type"] == "COMPLETED", state

    recs, manifest = _published(stack.home, FIRST_DAY)
    assert manifest["run_id"] == first
    assert manifest["run_date"] == FIRST_DAY.isoformat()
    assert recs.height == manifest["rows"] == manifest["users"] * K
    assert recs.get_column("run_id").unique().to_list() == [first]

    artifacts = _api(
        stack, "POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [first]}}}
    ).json()
    by_key = {a["key"]: a["data"] for a in artifacts}
    assert set(by_key) == {"nightly-run-report", "nightly-run-report-file", "nightly-health-trend"}
    table = by_key["nightly-run-report"]
    assert f"| {FIRST_DAY} | {manifest['rows']:,} | {manifest['users']:,} |" in table
    report = stack.home / "reports" / "nightly" / f"run_date={FIRST_DAY}.md"
    # The artifact is the report, its trend plot inline (the UI cannot read the host's file).
    png = f"trends-run_date={FIRST_DAY}.png"
    inline = re.compile(r"\]\(data:image/png;base64,[A-Za-z0-9+/=]+\)")
    assert len(inline.findall(table)) == 1
    assert report.read_text() == inline.sub(f"]({png})", table)
    assert str(FIRST_DAY) in by_key["nightly-health-trend"]
    assert f"]({report.resolve().as_uri()})" in by_key["nightly-run-report-file"]


def test_a_trigger_while_the_date_is_running_is_refused_and_writes_nothing(stack: Stack) -> None:
    day = FIRST_DAY + dt.timedelta(days=1)
    with run_date_lock(stack.home, day):  # as a run for `day` in progress would hold it
        refused = _trigger(stack, day)
        state = _final_state(stack, refused)
    assert state["type"] == "FAILED"
    assert f"a run for {day} is already in progress (pid {os.getpid()}" in state["message"]
    assert not partition_dir(stack.home / "recommendations", day).exists()


def test_backfill_through_the_deployment_runs_each_date_once_and_skips_on_rerun(
    stack: Stack,
) -> None:
    start, end = FIRST_DAY + dt.timedelta(days=1), FIRST_DAY + dt.timedelta(days=2)
    command = [
        sys.executable,
        "-m",
        "flows.cli",
        "backfill",
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--via-deployment",
    ]
    # Two backfills of the same range at once: the idempotency keys give one run per date.
    both = [
        subprocess.Popen(command, cwd=REPO, env=stack.env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    for day in (start, end):
        runs = _api(
            stack,
            "POST",
            "/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": [f"nightly-{day}"]}}},
        ).json()
        completed = [r for r in runs if r["state"]["type"] == "COMPLETED"]
        assert len(completed) == 1, runs
        _, manifest = _published(stack.home, day)
        assert manifest["run_id"] == completed[0]["id"]
    rerun = subprocess.run(command, cwd=REPO, env=stack.env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("skipped (complete)") == 2
