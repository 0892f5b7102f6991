"""Which windows the nightly LightGBM's final refit should use, chosen on validation folds
before each development cut only (never on the cut, never on 2011-07-01).

The nightly trainer fits on windows 1 .. n-1, stops early on window 0 and then refits for the
early-stopped rounds; the model it serves is the refit. The tuning folds (and
benchmarks/training_windows.py) score the early-stopped model only. Here each fold f (the
nightly run replayed at A_f = T - H - f * step) scores three models on [A_f, A_f + H):

- early: fit on windows 1 .. n-1, stopped on window 0 (what the folds usually score);
- newest: refit on windows 0 .. n-2 (the refit up to this round);
- every: refit on windows 0 .. n-1 (every window the run built).

Writes benchmarks/results/NAME.{json,md}.

    .venv/bin/python benchmarks/refit_windows.py --db STORE [--work DIR] [--n-windows 4]
        [--cuts 2011-09-01 2011-08-01] [--name NAME]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
from default_provenance import cached, kept_features
from fold_benchmark import add_common_args, cuts_flag, start, write_results
from training_windows import fold_windows, with_ranker

from tasks.rank import lgbm
from tasks.rank.train import keyed
from tasks.settings import Settings
from tasks.tune.folds import FoldTarget

COMMAND = ".venv/bin/python benchmarks/refit_windows.py --db STORE"
MODELS = ("early", "newest", "every")


def fold_models(data_dir: Path, fold: int, settings: Settings, features: list[str]) -> dict:
    """Protocol NDCG@K at fold `fold`'s as-of of the early-stopped model and both refits."""
    cfg, n = settings.ranker, settings.ranker.n_windows
    frames = [pl.read_parquet(data_dir / "windows" / f"{i}.parquet") for i in range(fold, fold + n)]
    target = FoldTarget.load(data_dir / "folds" / str(fold))
    early = lgbm.fit(keyed(frames[1:]), features, cfg, settings.seed, valid=keyed(frames[:1]))
    boosters = {"early": early.booster}
    for name, used in (("newest", frames[:-1]), ("every", frames)):
        refit = lgbm.fit(
            keyed(used), features, cfg, settings.seed, num_boost_round=early.best_iteration
        )
        boosters[name] = refit.booster
    out = {
        name: target.ndcg(lgbm.predict(booster, target.frame, features), settings.k)
        for name, booster in boosters.items()
    }
    return {**out, "rounds": early.best_iteration}


def compare(events, catalog, cut, settings, work: Path) -> dict:
    n = settings.ranker.n_windows
    data_dir, summary = fold_windows(events, catalog, cut, settings, work, n)
    features = kept_features(summary["features"])
    run = with_ranker(settings, num_threads=1)
    folds = []
    for f in range(len(summary["folds"])):
        started = time.perf_counter()
        folds.append(
            cached(
                work / f"refit_{cut:%Y-%m-%d}_n{n}_fold{f}.json",
                lambda f=f: fold_models(data_dir, f, run, features),
            )
        )
        print(f"  fold {f}: {folds[-1]} ({time.perf_counter() - started:.0f} s)", flush=True)
    return {
        "folds": folds,
        "mean": {m: statistics.fmean(r[m] for r in folds) for m in MODELS},
        "every_beats_newest": sum(r["every"] > r["newest"] for r in folds),
        "fold_as_ofs": [x["as_of"] for x in summary["folds"]],
    }


def render(record: dict) -> str:
    m = record["machine"]
    lines = [
        "# The nightly LightGBM's refit: every window or the newest n - 1",
        "",
        f"Measured {record['measured_at']} on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_gib']} GiB), Python {m['python']}; 1-minute load average "
        f"{record['load_start']:.1f} at the start, {record['load_end']:.1f} at the end.",
        f"Command: `{record['command']}`.",
        "",
        f"n_windows {record['n_windows']}, step {record['step']} days, LightGBM on one thread. "
        "Fold f replays the nightly trainer at A_f = T - 30 days - f x step and scores on "
        "[A_f, A_f + 30 days), which ends at or before the cut T; nothing here reads a cut's "
        "own window or 2011-07-01. `early` is the model stopped on window 0 (fit on 1 .. n-1), "
        "`newest` the refit on windows 0 .. n-2 for its rounds, `every` the refit on 0 .. n-1.",
        "",
        "| cut | early | newest | every | every above newest |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for cut, r in record["cuts"].items():
        mean = r["mean"]
        lines.append(
            f"| before {cut} | {mean['early']:.4f} | {mean['newest']:.4f} | "
            f"{mean['every']:.4f} | {r['every_beats_newest']} of {len(r['folds'])} folds |"
        )
    lines.append("")
    for cut, r in record["cuts"].items():
        lines += [
            f"## Cut {cut}",
            "",
            "| fold as-of | early | newest | every | rounds |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for as_of, f in zip(r["fold_as_ofs"], r["folds"], strict=True):
            lines.append(
                f"| {as_of[:10]} | {f['early']:.4f} | {f['newest']:.4f} | {f['every']:.4f} "
                f"| {f['rounds']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, "refit_windows", Path("/tmp/nightrec-training-windows"))
    parser.add_argument("--n-windows", type=int, help="default: the settings' ranker.n_windows")
    args = parser.parse_args()
    run = start(args)
    settings = run.settings
    if args.n_windows:
        settings = with_ranker(settings, n_windows=args.n_windows)
    cuts = {}
    for cut in args.cuts:
        print(f"{cut:%Y-%m-%d}", flush=True)
        cuts[f"{cut:%Y-%m-%d}"] = compare(run.events, run.catalog, cut, settings, args.work)
    record = {
        "benchmark": "refit_windows",
        "measured_at": dt.datetime.now().isoformat(timespec="minutes"),
        "machine": run.machine,
        "command": f"{COMMAND} --n-windows {settings.ranker.n_windows} {cuts_flag(args)}"
        + (f" --name {args.name}" if args.name != "refit_windows" else ""),
        "load_start": run.load_start,
        "load_end": os.getloadavg()[0],
        "n_windows": settings.ranker.n_windows,
        "step": settings.ranker.window_step_days,
        "cuts": cuts,
    }
    write_results(args.name, record, render)


if __name__ == "__main__":
    main()
