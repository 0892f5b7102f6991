"""Backfill 14 days of Online Retail through the nightly deployment, kill it half-way, rerun.

A real Prefect server and `nightrec serve` run on loopback (`tests/local_stack.py`). The
backfill CLI (`nightrec backfill --via-deployment`) is started; once half the dates are
complete and the next date's flow run is running, the backfill CLI AND the serving process
(with that flow run's subprocess) are killed with SIGKILL. `serve` is restarted and the same
backfill command rerun. At the end every date must be complete and written once, with no
flow run left RUNNING.

    .venv/bin/python benchmarks/deployment_backfill.py [--root DIR] [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness

from local_stack import REPO, local_stack
from machine import describe

from tasks.ingest.load import ingest_landing
from tasks.locks import holder_alive, run_date_lock_path
from tasks.publish.writer import is_complete, read_manifest
from tasks.settings import load_settings

DEFAULT_DATA = REPO.parent / "shared" / "data" / "online_retail" / "by-day"
RESULTS = REPO / "benchmarks" / "results"
START, END = dt.date(2011, 8, 1), dt.date(2011, 8, 14)
COMMAND = ".venv/bin/python benchmarks/deployment_backfill.py"


def days() -> list[dt.date]:
    return [START + dt.timedelta(days=i) for i in range((END - START).days + 1)]


def kill_lock_holder(path: Path) -> int | None:
    if not holder_alive(path):
        return None
    pid = int(path.read_text().split()[1])
    os.kill(pid, signal.SIGKILL)
    return pid


def running_for(stack, day: dt.date) -> float:
    """Seconds the flow run for `day` has been RUNNING (0 when it is not running)."""
    runs = stack.api(
        "POST", "/flow_runs/filter", json={"flow_runs": {"name": {"any_": [f"nightly-{day}"]}}}
    ).json()
    for run in runs:
        if run["state"]["type"] == "RUNNING" and run["start_time"]:
            start = dt.datetime.fromisoformat(run["start_time"])
            return (dt.datetime.now(dt.UTC) - start).total_seconds()
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="nightrec-deploy-backfill-"))
    home = root / "home"
    settings = load_settings(home=home)
    machine = describe()
    print(f"machine: {machine}\nroot: {root}", flush=True)

    started = time.perf_counter()
    ingest_landing(
        settings.db_path,
        "online-retail",
        args.data,
        max_bad_share=0.05,
        end=START - dt.timedelta(1),
    )
    print(f"ingested up to {START - dt.timedelta(1)} in {time.perf_counter() - started:.0f} s")

    backfill = [
        sys.executable,
        "-m",
        "flows.cli",
        "backfill",
        "--start",
        START.isoformat(),
        "--end",
        END.isoformat(),
        "--via-deployment",
    ]
    nightrec_env = {
        "NIGHTREC_HOME": str(home),
        "NIGHTREC_LANDING_DIR": str(args.data),
        "NIGHTREC_SOURCE": "online-retail",
        "NIGHTREC_OPS__ORPHAN_AFTER_S": "30",
    }
    with local_stack(root, nightrec_env) as stack:
        # Phase 1: run until half the dates are complete, then kill -9 the CLI and `serve`.
        first_log = (root / "logs" / "backfill-1.log").open("w")
        phase1 = time.perf_counter()
        first = subprocess.Popen(
            backfill, cwd=REPO, env=stack.env, stdout=first_log, stderr=subprocess.STDOUT
        )
        half = len(days()) // 2
        # Kill while the next date's flow run is mid-way, so `serve` dies with a run RUNNING.
        next_day = days()[half]
        while not (
            sum(is_complete(settings.recommendations_dir, d) for d in days()) >= half
            and running_for(stack, next_day) > 5
        ):
            if first.poll() is not None:
                raise SystemExit(f"backfill ended early ({first.returncode}); see {first_log.name}")
            time.sleep(1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        stack.kill("serve", signal.SIGKILL)
        # The runner may start flow runs in their own session; kill that run's process too,
        # as a machine crash would, leaving its flow run RUNNING in the API.
        killed_run_pid = kill_lock_holder(run_date_lock_path(home, next_day))
        complete_at_kill = [d for d in days() if is_complete(settings.recommendations_dir, d)]
        phase1_s = time.perf_counter() - phase1
        print(
            f"killed after {phase1_s:.0f} s with {len(complete_at_kill)} dates complete; "
            f"flow run process of {next_day}: {killed_run_pid or 'not running'}"
        )

        # Phase 2: serve again and rerun the same command.
        stack.serve()
        phase2 = time.perf_counter()
        rerun = subprocess.run(backfill, cwd=REPO, env=stack.env, capture_output=True, text=True)
        phase2_s = time.perf_counter() - phase2
        print(rerun.stdout[-6000:], rerun.stderr[-2000:])

        checks = []
        for day in days():
            runs = stack.api(
                "POST",
                "/flow_runs/filter",
                json={"flow_runs": {"name": {"any_": [f"nightly-{day}"]}}},
            ).json()
            states = sorted(r["state"]["name"] for r in runs)
            completed = [r["id"] for r in runs if r["state"]["type"] == "COMPLETED"]
            active = [r for r in runs if r["state"]["type"] in ("RUNNING", "PENDING", "SCHEDULED")]
            manifest = read_manifest(settings.recommendations_dir, day) or {}
            publisher = next((r for r in runs if r["id"] == manifest.get("run_id")), None)
            # Writes: every completed run published once; a run killed right after publishing
            # (marked Orphaned) published too.
            writes = len(completed) + (
                publisher is not None and publisher["state"]["name"] == "Orphaned"
            )
            checks.append(
                {
                    "run_date": day.isoformat(),
                    "complete": is_complete(settings.recommendations_dir, day),
                    "flow_runs": ", ".join(states),
                    "published_by": publisher["state"]["name"] if publisher else "unknown",
                    "writes": writes,
                    "left_running": len(active),
                    "rows": manifest.get("rows", 0),
                    "model_version": manifest.get("model_version", ""),
                    "retrained": manifest.get("retrained"),
                }
            )
    ok = rerun.returncode == 0 and all(
        c["complete"] and c["writes"] == 1 and c["left_running"] == 0 for c in checks
    )
    result = {
        "benchmark": "deployment_backfill",
        "measured_at": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "command": COMMAND,
        "range": [START.isoformat(), END.isoformat()],
        "complete_at_kill": [d.isoformat() for d in complete_at_kill],
        "killed_flow_run_process": killed_run_pid,
        "phase1_seconds": round(phase1_s, 1),
        "rerun_seconds": round(phase2_s, 1),
        "rerun_exit_code": rerun.returncode,
        "dates": checks,
        "every_date_complete_once": ok,
    }
    write_results(result, rerun.stdout)
    print(f"every date complete once: {ok}")
    sys.exit(0 if ok else 1)


def write_results(result: dict, rerun_stdout: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deployment_backfill.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    lines = [
        "# Backfill through the nightly deployment, killed half-way and rerun",
        "",
        f"Measured {result['measured_at']} on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_gib']} GiB), Python {m['python']}; machine shared with other work.",
        f"Command: `{result['command']}`",
        "",
        f"Online Retail, run dates {result['range'][0]}..{result['range'][1]}, one flow run per "
        "date through the nightly deployment served by `nightrec serve` against a `nightrec "
        "server` on loopback. Once half the dates were complete the backfill CLI and the serving "
        "process were killed with SIGKILL (waiting, when asked, until the next date's flow run "
        "was running); `serve` was restarted and the same backfill command rerun.",
        "",
        f"- complete when killed: {len(result['complete_at_kill'])} dates "
        f"({result['phase1_seconds']} s after the start)",
        f"- the running flow run's process killed too: pid {result['killed_flow_run_process']}",
        f"- rerun: exit code {result['rerun_exit_code']}, {result['rerun_seconds']} s",
        f"- every date complete, written once, no flow run left running: "
        f"**{result['every_date_complete_once']}**",
        "",
        "| run date | complete | flow runs (states) | published by a run that is | writes "
        "| left running | rows | model | retrained |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in result["dates"]:
        lines.append(
            f"| {c['run_date']} | {c['complete']} | {c['flow_runs']} | {c['published_by']} "
            f"| {c['writes']} | {c['left_running']} | {c['rows']:,} | {c['model_version']} "
            f"| {c['retrained']} |"
        )
    lines += ["", "The rerun's output:", "", "```", rerun_stdout.strip(), "```", ""]
    (RESULTS / "deployment_backfill.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
