"""How many labelled windows the nightly LightGBM should train on, chosen on validation folds
before each development cut only (never on the cut, never on 2011-07-01).

The folds are the tuning flow's (tasks/tune/folds.py): for a cut T, fold f replays the nightly
trainer at A_f = T - H - f * step, fit on windows f+1 .. f+n-1, stopped early on window f, and
scored under the protocol on [A_f, A_f + H). Window i has as-of A_0 - H - i * step, so every
window count n reads the same cached windows; only the fit changes. The windows are built
once per cut and step for the largest n (and cached in the work folder).

Writes benchmarks/results/NAME.{json,md}.

    .venv/bin/python benchmarks/training_windows.py --db STORE [--work DIR]
        [--n-windows 4 6 8] [--step 14] [--seeds 42 7] [--cuts 2011-09-01 2011-08-01]
        [--name NAME]
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

from default_provenance import cached, kept_features
from fold_benchmark import add_common_args, cuts_flag, start, write_results

from tasks.tune.folds import build_windows, fold_as_of_list, replace_cached
from tasks.tune.lgbm_objective import fold_ndcg

COMMAND = ".venv/bin/python benchmarks/training_windows.py --db STORE"


def with_ranker(settings, **update):
    return settings.model_copy(update={"ranker": settings.ranker.model_copy(update=update)})


def fold_windows(events, catalog, cut, settings, work: Path, n_windows: int) -> tuple[Path, dict]:
    """The labelled windows and fold inputs of `cut`'s validation folds for nightly runs of
    up to `n_windows` windows, built once into `work` (then reused): (folder, summary)."""
    step = settings.ranker.window_step_days
    data_dir = work / f"windows_{cut:%Y-%m-%d}_step{step}_n{n_windows}"
    fingerprint = {
        "cut": cut.isoformat(),
        "candidates": settings.candidates.model_dump(),
        "n_windows": n_windows,
        "step": step,
        "folds": settings.tune.validation_folds,
    }
    widest = with_ranker(settings, n_windows=n_windows)
    started = time.perf_counter()
    summary = replace_cached(
        data_dir, fingerprint, lambda out: build_windows(events, catalog, cut, widest, out)
    )
    print(f"  windows ready in {time.perf_counter() - started:.0f} s", flush=True)
    return data_dir, summary


def choose_windows(
    events, catalog, cut, settings, work: Path, counts: list[int], seeds: list[int]
) -> dict:
    step = settings.ranker.window_step_days
    data_dir, summary = fold_windows(events, catalog, cut, settings, work, max(counts))
    features = kept_features(summary["features"])
    grid = {}
    for n in counts:
        runs = {}
        for seed in seeds:
            run = with_ranker(settings, n_windows=n, num_threads=1).model_copy(
                update={"seed": seed}
            )
            paths = [
                work / f"n_{cut:%Y-%m-%d}_step{step}_{n}_seed{seed}_fold{f}.json"
                for f in range(len(summary["folds"]))
            ]
            reused = all(p.is_file() for p in paths)
            started = time.perf_counter()
            folds = [
                cached(p, lambda f=f, s=run: list(fold_ndcg(data_dir, f, s.ranker, s, features)))
                for f, p in enumerate(paths)
            ]
            runs[str(seed)] = {
                "ndcg": [v for v, _ in folds],
                "rounds": [r for _, r in folds],
                "mean": statistics.fmean(v for v, _ in folds),
                # None: read from an earlier run's results in the work folder.
                "seconds": None if reused else round(time.perf_counter() - started, 1),
            }
            print(f"  n_windows {n}, seed {seed}: {runs[str(seed)]}", flush=True)
        means = [r["mean"] for r in runs.values()]
        grid[str(n)] = {
            "seeds": runs,
            "mean": statistics.fmean(means),
            "seed_spread": max(means) - min(means),
        }
    return {
        "grid": grid,
        "best": max(grid, key=lambda k: grid[k]["mean"]),
        "windows": summary["windows"],
        "fold_as_ofs": [a.isoformat() for a in fold_as_of_list(cut, settings)],
    }


def render(record: dict) -> str:
    m = record["machine"]
    lines = [
        "# Training windows of the nightly LightGBM, chosen on validation folds",
        "",
        f"Measured {record['measured_at']} on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_gib']} GiB), Python {m['python']}; 1-minute load average "
        f"{record['load_start']:.1f} at the start, {record['load_end']:.1f} at the end.",
        f"Command: `{record['command']}`.",
        "",
        "Fold f replays the nightly trainer at A_f = T - 30 days - f x step, fit on the n - 1 "
        "windows before its stopping window, and is scored on [A_f, A_f + 30 days), which ends "
        "at or before the cut T. Nothing here reads a cut's own window or 2011-07-01. "
        f"Step {record['step']} days; LightGBM on one thread; seeds {record['seeds']}. A cell "
        "is the mean over the folds, averaged over the seeds; the seed spread is the largest "
        "minus the smallest seed's mean: how far the figure moves with nothing but the seed.",
        "",
    ]
    counts = record["counts"]
    lines += [
        "| n_windows | "
        + " | ".join(f"before {c} (seed spread)" for c in record["cuts"])
        + " | mean of the cuts |",
        "| ---: | " + " | ".join("---:" for _ in record["cuts"]) + " | ---: |",
    ]
    for n in counts:
        cells = [record["cuts"][c]["grid"][str(n)] for c in record["cuts"]]
        row = " | ".join(f"{g['mean']:.4f} ({g['seed_spread']:.4f})" for g in cells)
        lines.append(f"| {n} | {row} | {statistics.fmean(g['mean'] for g in cells):.4f} |")
    lines.append("")
    for cut, r in record["cuts"].items():
        lines += [f"## Cut {cut} (folds at {', '.join(a[:10] for a in r['fold_as_ofs'])})", ""]
        lines += [
            "| n_windows | seed | mean | folds | rounds | seconds |",
            "| ---: | ---: | ---: | --- | --- | ---: |",
        ]
        for n, g in r["grid"].items():
            for seed, run in g["seeds"].items():
                folds = ", ".join(f"{v:.4f}" for v in run["ndcg"])
                seconds = "earlier run" if run["seconds"] is None else run["seconds"]
                lines.append(
                    f"| {n} | {seed} | {run['mean']:.4f} | {folds} | {run['rounds']} | {seconds} |"
                )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, "training_windows", Path("/tmp/nightrec-training-windows"))
    parser.add_argument("--n-windows", nargs="+", type=int, default=[4, 6, 8])
    parser.add_argument("--step", type=int, default=14, help="days between windows")
    parser.add_argument(
        "--seeds", nargs="+", type=int, help="LightGBM seeds (default: the settings' seed)"
    )
    args = parser.parse_args()
    run = start(args)
    settings = with_ranker(run.settings, window_step_days=args.step)
    seeds = args.seeds or [settings.seed]
    counts = sorted(args.n_windows)
    cuts = {}
    for cut in args.cuts:
        print(f"{cut:%Y-%m-%d}", flush=True)
        cuts[f"{cut:%Y-%m-%d}"] = choose_windows(
            run.events, run.catalog, cut, settings, args.work, counts, seeds
        )
    record = {
        "benchmark": "training_windows",
        "measured_at": dt.datetime.now().isoformat(timespec="minutes"),
        "machine": run.machine,
        "command": f"{COMMAND} --n-windows {' '.join(map(str, counts))} "
        f"--step {args.step} {cuts_flag(args)}"
        + (f" --seeds {' '.join(map(str, seeds))}" if args.seeds else "")
        + (f" --name {args.name}" if args.name != "training_windows" else ""),
        "load_start": run.load_start,
        "load_end": os.getloadavg()[0],
        "step": args.step,
        "counts": counts,
        "seeds": seeds,
        "cuts": cuts,
    }
    write_results(args.name, record, render)


if __name__ == "__main__":
    main()
