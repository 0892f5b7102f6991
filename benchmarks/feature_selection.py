"""Which of the version-2 feature groups (tasks/features/build.py FEATURE_GROUPS) the ranker
keeps, chosen on validation windows before each development cut (never on a cut, never on
2011-07-01).

The windows are the tuning flow's folds (tasks/tune/folds.py), as in
benchmarks/default_provenance.py: for a cut T, fold f is the nightly run replayed at
A_f = T - H - f * step, scored under the protocol on [A_f, A_f + H). For each feature set (the
version-1 features; those plus every group; optionally those plus one group) the score is the mean
protocol NDCG@10 of the nightly trainer's early-stopped model over the folds of both cuts
(exactly the tuning objective, `fold_ndcg`, at the default learning rate, one thread). Every
group is kept when all of them together raise that mean over the version-1 set; with
`--groups`, each named group is kept when adding it alone raises the mean.

The windows are built once per cut into the work folder, under the same fingerprint as
default_provenance.py's learning-rate step, so both scripts share them; every fold's score is
cached, so a rerun resumes.

    .venv/bin/python benchmarks/feature_selection.py --db STORE [--work DIR] [--cuts D ...]
        [--render]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from default_provenance import CUTS, cached
from machine import describe
from ranking_quality import load

from tasks.features.build import FEATURE_GROUPS
from tasks.settings import load_settings
from tasks.tune.folds import build_windows, fold_as_of_list, replace_cached
from tasks.tune.lgbm_objective import fold_ndcg

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COMMAND = ".venv/bin/python benchmarks/feature_selection.py --db STORE"
NEW = {c for cols in FEATURE_GROUPS.values() for c in cols}


def feature_sets(all_features: list[str], groups: list[str]) -> dict[str, list[str]]:
    """Name -> features, each in the windows' column order: v1 is exactly the model trained
    before the new groups existed, v1+all exactly the nightly trainer's with every group."""
    sets = {"v1": [f for f in all_features if f not in NEW], "v1+all": list(all_features)}
    for g in groups:
        sets[f"v1+{g}"] = [f for f in all_features if f not in NEW or f in FEATURE_GROUPS[g]]
    return sets


def windows(events, catalog, cut: dt.datetime, settings, work: Path) -> tuple[Path, dict]:
    data_dir = work / f"windows_{cut:%Y-%m-%d}"
    fingerprint = {"cut": cut.isoformat(), "candidates": settings.candidates.model_dump()}
    started = time.perf_counter()
    summary = replace_cached(
        data_dir, fingerprint, lambda out: build_windows(events, catalog, cut, settings, out)
    )
    print(f"{cut:%Y-%m-%d} windows {time.perf_counter() - started:.0f} s", flush=True)
    return data_dir, summary


def score_sets(data_dir: Path, summary: dict, cut, settings, work: Path, sets) -> dict:
    cfg = settings.ranker.model_copy(update={"num_threads": 1})
    out = {}
    for name, features in sets.items():
        started = time.perf_counter()
        folds = [
            cached(
                work / f"fs_{cut:%Y-%m-%d}_{name}_fold{f}.json",
                lambda f=f, features=features: list(
                    fold_ndcg(data_dir, f, cfg, settings, features)
                ),
            )
            for f in range(len(summary["folds"]))
        ]
        out[name] = {"ndcg": [v for v, _ in folds], "rounds": [r for _, r in folds]}
        print(
            f"{cut:%Y-%m-%d} {name}: {out[name]} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return out


def render(record: dict) -> str:
    m = record["machine"]
    lines = [
        "# Feature groups kept on validation windows before each development cut",
        "",
        f"Measured {record['measured_at']} on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_gib']} GiB), Python {m['python']}; 1-minute load average "
        f"{record['load_start']:.1f} at the start, {record['load_end']:.1f} at the end.",
        f"Command: `{record['command']}`.",
        *([record["note"], ""] if record.get("note") else [""]),
        "Folds: the tuning flow's, nightly runs replayed at A_f = T - 30 days - f x 14 days "
        "(f = 0..3) for T = 2011-09-01 and 2011-08-01, each scored on [A_f, A_f + 30 days) "
        "under the protocol (NDCG@10, evaluated users of the fold), LightGBM at the default "
        f"parameters (learning rate {record['learning_rate']}), one thread. Nothing reads a "
        "cut's own window or 2011-07-01.",
        "",
        "| feature set | features | mean NDCG@10 (8 folds) | vs v1 | "
        + " | ".join(f"{c} folds" for c in record["cuts"])
        + " |",
        "| --- | --- | --- | --- | " + "--- | " * len(record["cuts"]),
    ]
    means = record["means"]
    for name, mean in means.items():
        per_cut = [
            ", ".join(f"{x:.4f}" for x in record["cuts"][c][name]["ndcg"]) for c in record["cuts"]
        ]
        lines.append(
            f"| {name} | {record['sizes'][name]} | {mean:.4f} | {mean - means['v1']:+.4f} | "
            + " | ".join(per_cut)
            + " |"
        )
    lines += [
        "",
        f"Groups tried one at a time: {', '.join(record['tried']) or 'none (all together)'}. "
        f"Kept: {', '.join(record['kept']) or 'none'}.",
        "",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a store with every day ingested")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nightrec-default-provenance"))
    parser.add_argument("--note", help="a line for the results page")
    parser.add_argument(
        "--cuts",
        nargs="+",
        type=dt.datetime.fromisoformat,
        default=list(CUTS),
        choices=list(CUTS),
        help="development cuts (exclusive as-of instants) to choose before",
    )
    parser.add_argument(
        "--groups",
        nargs="*",
        default=[],
        help="groups to try one at a time, each beside v1 and v1+all (default: none, every "
        "group is kept or dropped together; engagement, views/carts, is all 0 on a shop without "
        "them and cannot change a score there)",
    )
    parser.add_argument("--no-write", action="store_true", help="score only (one cut's process)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    machine = describe()
    load_start = os.getloadavg()[0]
    print(f"machine: {machine}; load average {load_start:.1f}", flush=True)
    events, catalog = load(args.db)
    settings = load_settings(home=args.work / "home")
    cuts = {}
    sizes = {}
    for cut in args.cuts:
        data_dir, summary = windows(events, catalog, cut, settings, args.work)
        sets = feature_sets(summary["features"], args.groups)
        sizes = {k: len(v) for k, v in sets.items()}
        cuts[f"{cut:%Y-%m-%d}"] = {
            "fold_as_ofs": [a.isoformat() for a in fold_as_of_list(cut, settings)],
            **score_sets(data_dir, summary, cut, settings, args.work, sets),
        }
    if args.no_write:
        return
    names = list(sizes)
    means = {n: statistics.fmean(x for c in cuts.values() for x in c[n]["ndcg"]) for n in names}
    if args.groups:  # one group at a time: keep those that raise the mean on their own
        kept = [g for g in args.groups if means[f"v1+{g}"] > means["v1"]]
    else:  # every group together, or none
        kept = list(FEATURE_GROUPS) if means["v1+all"] > means["v1"] else []
    record = {
        "benchmark": "feature_selection",
        "measured_at": dt.datetime.now().isoformat(timespec="minutes"),
        "machine": machine,
        "command": COMMAND,
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "learning_rate": settings.ranker.learning_rate,
        "cuts": cuts,
        "sizes": sizes,
        "means": means,
        "groups": {g: list(cols) for g, cols in FEATURE_GROUPS.items()},
        "tried": args.groups,
        "kept": kept,
        "note": args.note,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "feature_selection.json").write_text(json.dumps(record, indent=2))
    (RESULTS / "feature_selection.md").write_text(render(record))
    print(render(record))


if __name__ == "__main__":
    main()
