"""Hyperparameter tuning on the Online Retail development data: a Bayesian study of LightGBM
at as-of 2011-09-01 (validation windows before it), default vs best validation NDCG@10, then
the protocol backtest at 2011-09-01 (H = 30) of the untuned and the tuned ranker.

Writes benchmarks/results/tuning.md, tuning.json and the study's plots (tuning_plots/).

    .venv/bin/python benchmarks/tuning.py --db /tmp/or/db.duckdb [--work DIR] [--trials 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
AS_OF = dt.date(2011, 9, 1)
COMMAND = ".venv/bin/python benchmarks/tuning.py --db /tmp/or/db.duckdb"


def backtests(home: Path, best_params: dict) -> dict:
    from ranking_quality import load

    from tasks.evaluate.backtest import run_backtest
    from tasks.rank.params import with_ranker_params
    from tasks.settings import load_settings

    events, catalog = load(home / "nightrec.duckdb")
    settings = load_settings(home=home)
    as_of = dt.datetime.combine(AS_OF, dt.time())
    out = {}
    for name, run_settings in (
        ("untuned", settings),
        ("tuned", with_ranker_params(settings, best_params)),
    ):
        started = time.perf_counter()
        result = run_backtest(events, catalog, as_of, run_settings, n_resamples=200)
        out[name] = {
            "ndcg@10": result.metrics["lightgbm"]["ndcg@10"],
            "recall@10": result.metrics["lightgbm"]["recall@10"],
            "best_baseline": result.best_baseline,
            "baseline_ndcg@10": result.metrics[result.best_baseline]["ndcg@10"],
            "validation_ndcg@10": result.model_meta["validation"]["metrics"]["lightgbm"]["ndcg@10"],
            "best_iteration": result.model_meta["best_iteration"],
            "users": result.users,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(name, json.dumps(out[name]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a store with every day ingested")
    parser.add_argument("--work", type=Path, help="scratch NIGHTREC_HOME (default: a temp dir)")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--study", default="bench-lightgbm-bayes")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--timeout", type=float, help="seconds after which no trial starts")
    parser.add_argument(
        "--no-register",
        action="store_true",
        help="skip registering the best model (the tuned backtest trains the same model)",
    )
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # A shared, loaded machine can take minutes to start the ephemeral API server.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("nightrec").setLevel(logging.INFO)

    import optuna
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.tune import TuneParams, tune_flow

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    home = args.work or Path(tempfile.mkdtemp(prefix="nightrec-tuning-"))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "nightrec.duckdb").exists():
        shutil.copy(args.db, home / "nightrec.duckdb")
    machine = describe()
    print(f"machine: {machine}", flush=True)

    started = time.perf_counter()
    info = tune_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=args.parallel))(
        TuneParams(
            study=args.study,
            search="bayes",
            trials=args.trials,
            as_of=AS_OF,
            parallel=args.parallel,
            timeout_s=args.timeout,
            register_best=not args.no_register,
            home=str(home),
        )
    )
    tune_seconds = time.perf_counter() - started
    print(
        json.dumps({k: info[k] for k in ("trials", "best", "default", "registered")}, default=str),
        flush=True,
    )
    tests = backtests(home, info["best"]["params"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    plots = RESULTS / "tuning_plots"
    plots.mkdir(parents=True, exist_ok=True)
    report = Path(info["folder"]) / "report"
    for png in report.glob("*.png"):
        shutil.copy(png, plots / png.name)
    shutil.copy(report / "trials.json", RESULTS / "tuning_trials.json")
    record = {
        "measured": dt.datetime.now().isoformat(timespec="minutes"),
        "machine": machine,
        "command": COMMAND,
        "as_of": AS_OF.isoformat(),
        "study": {
            k: info.get(k)
            for k in ("trials", "best", "default", "registered", "prepared", "stopped_because")
        },
        "tune_seconds_this_call": round(tune_seconds, 1),
        "parallel": args.parallel,
        "test": tests,
        "peak_rss_gib": round(peak, 2),
    }
    (RESULTS / "tuning.json").write_text(json.dumps(record, indent=2, default=str))
    print(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
