"""Kill drill for `nightrec tune`: start a LightGBM grid study on a tiny synthetic shop as a
subprocess, kill -9 it mid-way, run the same command again, and check that trial numbers
continue, finished trials are not rerun and the grid is covered exactly once.

Writes benchmarks/results/tuning_kill_drill.md.

    .venv/bin/python benchmarks/tuning_kill_drill.py
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna
from machine import describe
from optuna.trial import TrialState

from tasks.ingest.load import ingest_catalog, ingest_landing
from tasks.synth.shop import SynthShopConfig, generate_shop, write_landing
from tasks.tune.study import storage

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHOP = SynthShopConfig(n_customers=40, n_items=30, n_categories=4, days=45, seed=3)
GRID = {"learning_rate": [0.05, 0.1, 0.2], "num_leaves": [7, 15, 31]}
STUDY = "drill"


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="nightrec-kill-drill-"))
    report = write_landing(generate_shop(SHOP), home / "landing")
    ingest_catalog(home / "nightrec.duckdb", report.catalog_path)
    ingest_landing(home / "nightrec.duckdb", "canonical", home / "landing", max_bad_share=0.5)
    space = home / "space.yml"
    space.write_text(
        "params:\n"
        f"  learning_rate: {{type: float, low: 0.01, high: 0.3, grid: {GRID['learning_rate']}}}\n"
        f"  num_leaves: {{type: int, low: 3, high: 63, grid: {GRID['num_leaves']}}}\n"
    )
    as_of = SHOP.start + dt.timedelta(days=SHOP.days - 5)
    env = {
        **os.environ,
        "NIGHTREC_K": "5",
        "NIGHTREC_HORIZON_DAYS": "7",
        "NIGHTREC_RANKER__N_WINDOWS": "3",
        "NIGHTREC_RANKER__WINDOW_STEP_DAYS": "7",
        "NIGHTREC_RANKER__MIN_DATA_IN_LEAF": "5",
        "NIGHTREC_TUNE__THREADS_PER_TRIAL": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
    }
    command = [sys.executable, "-m", "flows.cli", "tune", "--study", STUDY, "--search", "grid"]
    command += ["--trials", "100", "--as-of", f"{as_of}", "--space", str(space)]
    command += ["--parallel", "2", "--home", str(home)]
    folder = home / "tuning" / STUDY

    def trials() -> list[optuna.trial.FrozenTrial]:
        study = optuna.load_study(study_name=STUDY, storage=storage(folder))
        return study.get_trials()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first = subprocess.Popen(command, env=env, cwd=ROOT)
    while True:
        journal = folder / "journal.log"
        started = journal.is_file() and journal.stat().st_size > 0
        if started and sum(t.state == TrialState.COMPLETE for t in trials()) >= 3:
            break
        if first.poll() is not None:
            raise SystemExit("the study finished before it could be killed")
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = trials()
    started = time.perf_counter()
    second = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    rerun_s = time.perf_counter() - started
    after = trials()

    finished_before = {t.number: t for t in before if t.state == TrialState.COMPLETE}
    running_before = [t.number for t in before if t.state == TrialState.RUNNING]
    new = after[len(before) :]
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    points = sorted((t.params["learning_rate"], t.params["num_leaves"]) for t in complete)
    expected = sorted(itertools.product(GRID["learning_rate"], GRID["num_leaves"]))
    checks = {
        "second run exit code 0": second.returncode == 0,
        "trial numbers continue": bool(new) and min(t.number for t in new) == len(before),
        "finished trials kept (same value)": all(
            after[n].state == TrialState.COMPLETE and after[n].value == t.value
            for n, t in finished_before.items()
        ),
        "finished points not rerun": not {
            (t.params["learning_rate"], t.params["num_leaves"]) for t in new
        }
        & {(t.params["learning_rate"], t.params["num_leaves"]) for t in finished_before.values()},
        "RUNNING trials of the killed run marked FAIL": all(
            after[n].state == TrialState.FAIL for n in running_before
        ),
        "grid covered exactly once": points == expected,
    }
    machine = describe()
    lines = [
        "# Kill drill: `nightrec tune` killed with SIGKILL mid-study, then rerun",
        "",
        f"Measured {dt.datetime.now():%Y-%m-%dT%H:%M} on {machine['cpu']} ({machine['cores']} "
        f"cores, shared with other engineers), Python {machine['python']}.",
        "Command: `.venv/bin/python benchmarks/tuning_kill_drill.py`: LightGBM grid "
        f"{GRID} (9 points) on a tiny synthetic shop, `--parallel 2`, killed once 3 trials "
        f"were COMPLETE; rerun took {rerun_s:.0f} s (including Prefect's ephemeral start).",
        "",
        f"Before the kill: {len(before)} trials, COMPLETE {sorted(finished_before)}, "
        f"RUNNING {running_before}.",
        "",
        "| trial | state after rerun | learning_rate | num_leaves | value | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in after:
        note = "run 1" if t.number < len(before) else "run 2"
        if "requeued_from" in t.user_attrs:
            note += f", re-run of trial {t.user_attrs['requeued_from']}"
        value = f"{t.value:.5f}" if t.value is not None else ""
        lines.append(
            f"| {t.number} | {t.state.name} | {t.params.get('learning_rate', '')} | "
            f"{t.params.get('num_leaves', '')} | {value} | {note} |"
        )
    lines += ["", "| check | result |", "| --- | --- |"]
    lines += [f"| {name} | {'yes' if ok else 'NO'} |" for name, ok in checks.items()]
    text = "\n".join(lines) + "\n"
    (RESULTS / "tuning_kill_drill.md").write_text(text)
    print(text)
    if not all(checks.values()):
        print(second.stderr, file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
