"""Hyperparameter tuning on the Online Retail development data: a Bayesian study of LightGBM
at as-of 2011-09-01 (validation windows before it), default vs best validation NDCG@10, then
the protocol backtest at 2011-09-01 (H = 30) of the untuned and the tuned ranker.

Writes benchmarks/results/tuning.md, tuning.json and the study's plots (tuning_plots/).

    .venv/bin/python benchmarks/tuning.py --db STORE [--work DIR] [--trials 30]
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
COMMAND = ".venv/bin/python benchmarks/tuning.py --db STORE"


def backtests(
    home: Path, best_params: dict | None, skip_untuned: bool = False, kept_only: bool = False
) -> dict:
    """Untuned and (given best_params) tuned backtests; each result is kept in the scratch
    home, so a rerun (or an earlier `--untuned-only` run) does not repeat it."""
    from ranking_quality import load

    from tasks.evaluate.backtest import run_backtest
    from tasks.rank.params import with_ranker_params
    from tasks.settings import load_settings

    events, catalog = load(home / "nightrec.duckdb")
    settings = load_settings(home=home)
    as_of = dt.datetime.combine(AS_OF, dt.time())
    out = {}
    runs = [] if skip_untuned else [("untuned", settings)]
    if best_params is not None:
        runs.append(("tuned", with_ranker_params(settings, best_params)))
    for name, run_settings in runs:
        cached = home / f"backtest_{name}.json"
        if cached.is_file() and json.loads(cached.read_text())["params"] == best_params_of(
            name, best_params
        ):
            out[name] = json.loads(cached.read_text())["result"]
            print(name, "(kept from an earlier run)", json.dumps(out[name]), flush=True)
            continue
        if kept_only:
            continue  # reported as not measured
        started = time.perf_counter()
        result = run_backtest(
            events, catalog, as_of, run_settings, n_resamples=200, kinds=("lightgbm",)
        )
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
        payload = {"params": best_params_of(name, best_params), "result": out[name]}
        cached.write_text(json.dumps(payload))
        print(name, json.dumps(out[name]), flush=True)
    return out


def best_params_of(name: str, best_params: dict | None) -> dict | None:
    return best_params if name == "tuned" else None


def study_times(folder: Path) -> dict:
    """Wall time from the first trial's start to the last trial's end (across resumed calls)
    and the summed seconds of the trials themselves."""
    import optuna

    from tasks.tune.study import storage

    study = optuna.load_study(study_name=folder.name, storage=storage(folder))
    trials = [t for t in study.trials if t.datetime_start and t.datetime_complete]
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    return {
        "first_trial_start": first.isoformat(timespec="seconds"),
        "last_trial_end": last.isoformat(timespec="seconds"),
        "wall_seconds": round((last - first).total_seconds(), 1),
        "trial_seconds_sum": round(sum(t.user_attrs.get("seconds", 0) for t in trials), 1),
    }


def write_markdown(record: dict) -> str:
    study, test, m = record["study"], record["test"], record["machine"]
    best, default = study["best"], study.get("default") or {}
    finished = sum(n for s, n in study["trials"].items() if s in ("COMPLETE", "PRUNED"))
    default_value = default.get("value", float("nan"))
    valid_ok = best["value"] > default_value
    measured = "tuned" in test and "untuned" in test
    test_ok = measured and test["tuned"]["ndcg@10"] >= test["untuned"]["ndcg@10"]
    times = record["times"]
    folds = (study.get("prepared") or {}).get("folds") or []
    n_folds = len(folds)
    fold_dates = ", ".join(f["as_of"][:10] for f in folds)
    lines = [
        "# Hyperparameter tuning: LightGBM, Bayesian (TPE), Online Retail",
        "",
        f"Measured {record['measured']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} "
        f"GiB; shared with other engineers' jobs, so times are noisy), Python {m['python']}; "
        "peak RSS "
        f"{record['peak_rss_gib']} GiB.",
        f"Command: `{record['command']}`. Study as-of {record['as_of']}: objective = mean "
        f"protocol NDCG@10 over {n_folds} folds, each a replayed nightly retrain at an earlier "
        f"as_of ({fold_dates}) scored on the 30 days after it, which no fit saw; "
        f"{record['parallel']} trials at a time, 1 LightGBM thread each.",
        "",
        f"| | trial | validation NDCG@10 (mean of {n_folds} folds) |",
        "| --- | --- | --- |",
        f"| default parameters | {default.get('trial', '-')} | {default_value:.5f} |",
        f"| best trial | {best['trial']} | {best['value']:.5f} |",
        "",
        f"Trials: {study['trials']} ({finished} finished). Best parameters: `{best['params']}`.",
        *(
            [
                "FAIL trials: left RUNNING when the tuning process was killed with SIGKILL "
                "(to end the study inside the time box); the next call resumed the study and "
                "marked them FAIL, keeping every finished trial."
            ]
            if "FAIL" in study["trials"]
            else []
        ),
        f"Study time: {times['wall_seconds'] / 60:.1f} min wall from the first trial's start "
        f"to the last trial's end ({times['trial_seconds_sum'] / 60:.1f} min of trial time "
        "summed over parallel trials); building the windows once took part of the first call.",
        "",
        f"Test: protocol backtest at as-of {record['as_of']}, H = 30, K = 10, "
        f"{(test.get('untuned') or test.get('tuned') or {}).get('users', '?')} users "
        "(the nightly trainer, untuned vs the best trial's "
        "parameters):",
        "",
        "| model | test NDCG@10 | test Recall@10 | its own validation NDCG@10 | rounds | s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("untuned", "tuned"):
        if name not in test:
            lines.append(f"| {name} | not measured (out of time on the shared machine) | | | | |")
            continue
        r = test[name]
        lines.append(
            f"| {name} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | "
            f"{r['validation_ndcg@10']:.4f} | {r['best_iteration']} | {r['seconds']} |"
        )
    baseline = test.get("untuned") or test.get("tuned")
    if baseline:
        lines.append(
            f"| {baseline['best_baseline']} (best baseline) | "
            f"{baseline['baseline_ndcg@10']:.4f} | | | | |"
        )
    lines += [
        "",
        "Acceptance:",
        f"- tuned validation > default: {'met' if valid_ok else 'NOT met'} "
        f"({best['value']:.5f} vs {default_value:.5f}).",
        "- tuned test NDCG@10 not below untuned: "
        + (
            f"{'met' if test_ok else 'NOT met'} "
            f"({test['tuned']['ndcg@10']:.4f} vs {test['untuned']['ndcg@10']:.4f})."
            if measured
            else "NOT measured (a backtest did not finish in time)."
        ),
        f"- 30 trials: {'met' if finished >= 30 else f'NOT met ({finished} finished)'}.",
        "",
        "Plots: `tuning_plots/` (optimization history, parameter importances, best parameters); "
        "every trial: `tuning_trials.json`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a store with every day ingested")
    parser.add_argument("--work", type=Path, help="scratch NIGHTREC_HOME (default: a temp dir)")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--study", default="bench-lightgbm-bayes")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument(
        "--untuned-only", action="store_true", help="only the untuned backtest, then stop"
    )
    parser.add_argument(
        "--assemble",
        action="store_true",
        help="write the results from the study's report and the kept backtests (no trials)",
    )
    parser.add_argument(
        "--tuned-only", action="store_true", help="only the tuned backtest, then stop"
    )
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
    if args.untuned_only:
        backtests(home, None)
        return
    if args.tuned_only:  # the best trial of the study as it stands
        from tasks.tune.study import storage

        folder = home / "tuning" / args.study
        study = optuna.load_study(study_name=args.study, storage=storage(folder))
        backtests(home, study.best_params, skip_untuned=True)
        return

    folder = home / "tuning" / args.study
    if args.assemble:  # the study's own report (from its last call) and the kept backtests
        info = {**json.loads((folder / "report" / "summary.json").read_text())}
        info["folder"] = str(folder)
        tune_seconds = None
    else:
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
            json.dumps(
                {k: info[k] for k in ("trials", "best", "default", "registered")}, default=str
            ),
            flush=True,
        )
    tests = backtests(home, info["best"]["params"], kept_only=args.assemble)
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
        "tune_seconds_this_call": tune_seconds and round(tune_seconds, 1),
        "parallel": args.parallel,
        "test": tests,
        "peak_rss_gib": round(peak, 2),
        "times": study_times(Path(info["folder"])),
    }
    (RESULTS / "tuning.json").write_text(json.dumps(record, indent=2, default=str))
    text = write_markdown(record)
    (RESULTS / "tuning.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
