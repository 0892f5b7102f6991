"""Benchmark: one default retraining day on a real store, as a user runs it.

Copies the store (read only: the source file is only read) into a scratch home with no
models, runs `nightrec run --date D` with the default settings (`ranker.kind=auto`), and
records the wall time of the whole command, the peak RSS of its largest process, which kind
auto chose and why (each kind's validation NDCG, the network's estimate and budget), the
network's own seconds, the machine and the load average before and after.

    .venv/bin/python benchmarks/retraining_day.py --db /path/to/nightrec.duckdb \
        [--date 2011-08-31] [--home DIR] [--name retraining_day] [--env KEY=VALUE ...]

Results: benchmarks/results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET_S, TARGET_GIB = 600.0, 3.0


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_day(db: Path, day: dt.date, home: Path, extra_env: dict[str, str]) -> dict:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copyfile(db, home / "nightrec.duckdb")  # the source store is only read
    env = {
        **os.environ,
        "NIGHTREC_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
        **extra_env,
    }
    load_before = load_average()
    log_path = home.parent / f"{home.name}-run.log"  # beside the home: it is replaced per run
    started = time.perf_counter()
    with log_path.open("w") as log:  # written as the run goes: `tail -f` shows its stages
        proc = subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", "--date", day.isoformat()],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_gib = usage.ru_maxrss / 2**20
    output = log_path.read_text()
    manifest_path = home / "recommendations" / f"run_date={day}" / "_manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    version = manifest.get("model_version")
    meta_path = home / "models" / str(version) / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return {
        "date": day.isoformat(),
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        # CPU seconds of the command and its children: what the work costs on a machine
        # others are not using (on a shared machine the wall time mostly measures them).
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_gib": round(peak_gib, 2),
        "load_before": load_before,
        "load_after": load_average(),
        "model_version": version,
        "model_kind": manifest.get("model_kind"),
        "model_choice": manifest.get("model_choice"),
        "kind_selection": manifest.get("kind_selection"),
        "neural_seconds": (meta.get("neural") or {}).get("seconds"),
        "neural_best_epoch": (meta.get("neural") or {}).get("best_epoch"),
        "neural_threads": (meta.get("neural") or {}).get("threads"),
        "env": extra_env,
        "log": str(log_path),
        "log_tail": output.splitlines()[-25:],
    }


def render(result: dict, machine: dict, command: str) -> str:
    sel = result["kind_selection"] or {}
    net = sel.get("network") or {}
    est = net.get("estimate") or {}
    ok_time = result["wall_s"] <= TARGET_S
    ok_mem = result["peak_rss_gib"] <= TARGET_GIB
    lines = [
        "# One default retraining day on Online Retail",
        "",
        f"Measured {dt.datetime.now():%Y-%m-%dT%H:%M} on {machine['cpu']} "
        f"({machine['cores']} cores, {machine['memory_gib']} GiB), Python {machine['python']}.",
        f"Command: `{command}`",
        f"Load average (1, 5, 15 min) before: {result['load_before']}; after: "
        f"{result['load_after']}.",
        "",
        f"`nightrec run --date {result['date']}` on a copy of the store with no model yet "
        "(so the day retrains), default settings (`ranker.kind=auto`"
        + (f", plus {result['env']}" if result["env"] else "")
        + ").",
        "",
        "| wall s (whole command) | target | CPU s | peak RSS GiB | target | exit | kind served |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {result['wall_s']} | <= {TARGET_S:.0f} ({'met' if ok_time else 'MISSED'}) "
        f"| {result['cpu_s']} "
        f"| {result['peak_rss_gib']} | <= {TARGET_GIB:.0f} ({'met' if ok_mem else 'MISSED'}) "
        f"| {result['exit_code']} | {result['model_kind']} |",
        "",
        f"Model choice: {result['model_choice']}.",
        "",
        f"Kind selection ({sel.get('mode')}): winner **{sel.get('winner')}**: {sel.get('why')}.",
        f"Network: {net.get('why')}.",
        "",
        "| kind | validation NDCG@10 (window " + (sel.get("validation_window") or "")[:10] + ") |",
        "| --- | --- |",
        *(f"| {k} | {v:.4f} |" for k, v in (sel.get("validation_ndcg") or {}).items()),
        "",
        f"Network estimate: {est.get('seconds')} s ({est.get('epochs')} epochs "
        f"early-stopping run + refit; {est.get('train_list_ms')} ms per training list, "
        f"{est.get('eval_list_ms')} ms per evaluated list), budget {net.get('budget_s')} s; "
        f"the network's fit took {net.get('fit_seconds')} s, with the blend and both "
        f"validations {net.get('seconds')} s; LightGBM "
        f"{sel.get('lightgbm_seconds')} s. Network fit seconds: {result['neural_seconds']}, "
        f"best epoch {result['neural_best_epoch']}, torch threads {result['neural_threads']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a store (only read)")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2011, 8, 31))
    parser.add_argument("--home", type=Path, default=None, help="scratch home (replaced)")
    parser.add_argument("--name", default="retraining_day", help="results file name")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the run")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="nightrec-retrain-")) / "home"
    extra = dict(item.split("=", 1) for item in args.env)
    machine = describe()
    result = run_day(args.db, args.date, home, extra)
    command = "python benchmarks/retraining_day.py " + " ".join(sys.argv[1:])
    print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}, indent=2))
    if result["exit_code"] != 0:
        print("\n".join(result["log_tail"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"machine": machine, "command": command, **result}, indent=2) + "\n"
    )
    (RESULTS / f"{args.name}.md").write_text(render(result, machine, command))


if __name__ == "__main__":
    main()
