"""A short Bayesian study of the neural ranker on the Online Retail development data: default
vs best validation NDCG@10 (protocol, padded top-10, H = 30) on rolling validation windows
before as-of 2011-09-01, with epoch-level pruning. The window a report quotes (as-of onwards)
is never seen.

Writes benchmarks/results/tuning_neural.md and tuning_neural.json.

    .venv/bin/python benchmarks/tuning_neural.py --db STORE [--work DIR] [--trials 8]
        [--timeout S] [--folds 1] [--prune-startup 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
AS_OF = dt.date(2011, 9, 1)
COMMAND = ".venv/bin/python benchmarks/tuning_neural.py --db STORE"


class LoadSampler(threading.Thread):
    """The 1-minute load average every `every` seconds while the study runs."""

    def __init__(self, every: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self._done = every, [os.getloadavg()[0]], threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        self._done.set()
        s = self.samples
        return {"min": min(s), "mean": round(sum(s) / len(s), 2), "max": max(s), "n": len(s)}


def trial_rows(folder: Path) -> list[dict]:
    import optuna

    from tasks.tune.study import storage

    study = optuna.load_study(study_name=folder.name, storage=storage(folder))
    rows = []
    for t in study.trials:
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.value,
                "epochs_reported": len(t.intermediate_values),
                "last_step": max(t.intermediate_values, default=None),
                "best_epochs": t.user_attrs.get("best_epochs"),
                "epoch_ndcg": t.user_attrs.get("epoch_ndcg"),
                "seconds": t.user_attrs.get("seconds"),
                "default": bool(t.user_attrs.get("default_params")),
                "params": t.params,
            }
        )
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _param(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_section(record: dict) -> list[str]:
    m, info, load = record["machine"], record["info"], record["load_average"]
    best, default = info.get("best") or {}, info.get("default") or {}
    rows = record["trials"]
    names = sorted({k for r in rows for k in r["params"]})
    folds = record["folds"]
    lines = [
        f"## Study `{record['study']}`: {len(rows)} trials, {folds} validation fold(s)",
        "",
        f"Measured {record['measured']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB, "
        f"shared with another session's LightGBM tuning benchmark), Python {m['python']}, CPU "
        f"torch {record['torch']} with {record['torch_threads']} thread; load average (1 min) "
        f"during the study {load['min']:.1f}-{load['max']:.1f} (mean {load['mean']:.1f}, "
        f"{load['n']} samples); peak RSS {record['peak_rss_gib']} GiB.",
        f"Command: `{record['command']}` ({record['env']}).",
        f"Objective: protocol NDCG@10 (padded top-10 of the evaluated customers, H = 30) on "
        f"{folds} rolling validation window(s) before as-of {record['as_of']} "
        f"({', '.join(f['validate'][:10] for f in record['prepared']['folds'])}), at the "
        "epoch early stopping keeps, mean over folds; every epoch's value goes to the median "
        f"pruner (start-up {record['prune_startup']} trials, no warm-up). One trial at a time, "
        "search space `tasks/tune/spaces/neural.yml`; trial 0 is today's defaults.",
        "",
        "| | trial | validation NDCG@10 |",
        "| --- | --- | --- |",
        f"| default parameters | {default.get('trial', '-')} | {_fmt(default.get('value'))} |",
        f"| best trial | {best.get('trial', '-')} | {_fmt(best.get('value'))} |",
        "",
        f"Trials: {info['trials']} (stopped because: {info['stopped_because']}); "
        f"{record['seconds'] / 60:.1f} min wall for the whole call, building the windows "
        f"included ({record['prepare_note']}).",
        "",
        "| trial | state | NDCG@10 (pruned: its last epoch's) | epochs run | best epoch per fold "
        "| s | " + " | ".join(names) + " |",
        "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for r in rows:
        best_epochs = ", ".join(map(str, r["best_epochs"] or [])) or "-"
        label = f"{r['trial']}{' (defaults)' if r['default'] else ''}"
        seconds = f"{r['seconds']:.1f}" if r["seconds"] is not None else "-"
        lines.append(
            f"| {label} | {r['state']} | {_fmt(r['value'])} | {r['epochs_reported']} | "
            f"{best_epochs} | {seconds} | "
            + " | ".join(_param(r["params"].get(n, "")) for n in names)
            + " |"
        )
    if best.get("value") is not None and default.get("value") is not None:
        lines += [
            "",
            f"Best {best['value']:.4f} vs default {default['value']:.4f} "
            f"({best['value'] - default['value']:+.4f}), validation only.",
        ]
    return lines


def write_markdown(runs: list[dict]) -> str:
    lines = [
        "# Hyperparameter tuning: neural ranker, Bayesian (TPE) with epoch pruning, Online Retail",
        "",
        "`nightrec tune --model neural` as the benchmark runs it (the flow, `register_best` "
        "off). Validation windows only: the as-of window itself is never looked at. The "
        "differences between settings in `neural_tuning.md` (about ±0.005) are of the order of "
        "the noise between windows, so a short study's winner is a candidate for the promotion "
        "gate, not a proven improvement.",
        "",
    ]
    for record in runs:
        lines += [*run_section(record), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a store with every day ingested")
    parser.add_argument("--work", type=Path, help="scratch NIGHTREC_HOME (default: a temp dir)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--timeout", type=float, help="seconds after which no trial starts")
    parser.add_argument("--folds", type=int, default=1, help="tune.validation_folds")
    parser.add_argument("--prune-startup", type=int, default=3, help="tune.prune_startup_trials")
    parser.add_argument("--study", default="bench-neural-bayes")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the markdown from the JSON"
    )
    args = parser.parse_args()
    results = RESULTS / "tuning_neural.json"
    runs = json.loads(results.read_text())["runs"] if results.is_file() else []
    if args.render:
        (RESULTS / "tuning_neural.md").write_text(write_markdown(runs))
        return
    env = {
        "NIGHTREC_NEURAL__NUM_THREADS": "1",
        "NIGHTREC_TUNE__VALIDATION_FOLDS": str(args.folds),
        "NIGHTREC_TUNE__PRUNE_STARTUP_TRIALS": str(args.prune_startup),
    }
    os.environ.update(env)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("nightrec.tune").setLevel(logging.INFO)

    import optuna
    import torch
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.tune import TuneParams, tune_flow

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    home = args.work or Path(tempfile.mkdtemp(prefix="nightrec-tuning-neural-"))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "nightrec.duckdb").exists():
        shutil.copy(args.db, home / "nightrec.duckdb")
    machine = describe()
    print(f"machine: {machine}", flush=True)
    sampler = LoadSampler()
    sampler.start()
    started = time.perf_counter()
    info = tune_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))(
        TuneParams(
            study=args.study,
            model="neural",
            search="bayes",
            trials=args.trials,
            as_of=AS_OF,
            parallel=1,
            timeout_s=args.timeout,
            register_best=False,
            home=str(home),
        )
    )
    seconds = time.perf_counter() - started
    load = sampler.stop()
    folder = Path(info["folder"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    command = COMMAND + f" --trials {args.trials} --folds {args.folds} --study {args.study}"
    if args.timeout:
        command += f" --timeout {args.timeout:g}"
    record = {
        "study": args.study,
        "measured": dt.datetime.now().isoformat(timespec="minutes"),
        "machine": machine,
        "command": command,
        "env": ", ".join(f"{k}={v}" for k, v in env.items()),
        "as_of": AS_OF.isoformat(),
        "folds": args.folds,
        "prune_startup": args.prune_startup,
        "torch_threads": int(env["NIGHTREC_NEURAL__NUM_THREADS"]),
        "load_average": load,
        "peak_rss_gib": round(peak, 2),
        "seconds": round(seconds, 1),
        "prepare_note": "windows built this call"
        if not info["prepared"].get("reused")
        else "windows reused from an earlier call",
        "info": {k: info.get(k) for k in ("trials", "best", "default", "stopped_because")},
        "prepared": {k: v for k, v in info["prepared"].items() if k != "features"},
        "trials": trial_rows(folder),
        "torch": torch.__version__,
    }
    # One entry per study name: a rerun of a study replaces its entry, other studies stay.
    runs = [r for r in runs if r.get("study") != args.study] + [record]
    RESULTS.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"runs": runs}, indent=2, default=str) + "\n")
    (RESULTS / "tuning_neural.md").write_text(write_markdown(runs))
    print("\n".join(run_section(record)), flush=True)


if __name__ == "__main__":
    main()
