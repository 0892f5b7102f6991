"""Re-choose the ranking defaults that were once chosen by looking at a development cut, on
validation windows before each cut only (never on the cut, never on 2011-07-01).

The windows are the tuning flow's folds (tasks/tune/folds.py): for a cut T, fold f is the
nightly run replayed at A_f = T - H - f * step (step = ranker.window_step_days), scored
under the protocol on [A_f, A_f + H), which ends at or before T. Three choices:

- repurchase decay tau (the repurchase baseline, which is also the nightly fallback list):
  mean protocol NDCG@10 of the baseline over the folds, for each tau of a small grid;
- reciprocal-rank fusion weights of the candidate sources: mean per-customer recall of the
  merged list the ranker gets (the top `max_per_user` of the uncapped union ordered by the
  weights), over the folds;
- LightGBM learning rate: mean protocol NDCG@10 of the nightly trainer's early-stopped model
  over the folds (exactly the tuning objective, `fold_ndcg`).

Writes benchmarks/results/default_provenance.{json,md}. Results are cached per step in the
work folder, so a rerun resumes.

    .venv/bin/python benchmarks/default_provenance.py --db STORE [--work DIR]
        [--skip-learning-rate]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
from machine import describe
from ranking_quality import load

from tasks.baselines.recommenders import REPURCHASE_TAU_DAYS, repurchase
from tasks.candidates.generate import generate_candidates, merged_order
from tasks.candidates.recall import per_customer_recall
from tasks.constants import ITEM_ID, USER_ID
from tasks.protocol.metrics import ranking_metrics
from tasks.protocol.split import evaluated_users, truth_window
from tasks.settings import load_settings
from tasks.timeutil import events_before
from tasks.tune.folds import build_windows, fold_as_of_list, replace_cached
from tasks.tune.lgbm_objective import fold_ndcg

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CUTS = (dt.datetime(2011, 9, 1), dt.datetime(2011, 8, 1))  # never 2011-07-01: report-only
TAUS = (30.0, 50.0, 70.0, 90.0, 120.0, 180.0, 270.0, 365.0)
LEARNING_RATES = (0.03, 0.05, 0.1)
WEIGHTS = {
    "merge_weight_hist": (1.0, 2.0, 4.0),
    "merge_weight_covis": (0.1, 0.3, 1.0),
    "merge_weight_ease": (0.5, 1.0, 2.0),
    "merge_weight_pop": (0.1, 0.2, 0.5),
}
COMMAND = ".venv/bin/python benchmarks/default_provenance.py --db STORE"


def cached(path: Path, compute):
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value))
    return value


def choose_tau(events: pl.DataFrame, fold_as_ofs: list[dt.datetime], horizon: int) -> dict:
    per_tau: dict[str, list[float]] = {str(tau): [] for tau in TAUS}
    for a in fold_as_ofs:
        users = evaluated_users(events, a, horizon)
        truth = truth_window(events, a, horizon)
        past = events_before(events, a)
        for tau in TAUS:
            recs = repurchase(past, users, a, 10, tau=tau)
            per_tau[str(tau)].append(ranking_metrics(recs, truth, users, 10)["ndcg@10"])
    means = {tau: statistics.fmean(v) for tau, v in per_tau.items()}
    return {"folds": per_tau, "mean": means, "best": max(means, key=means.get)}


def choose_weights(events: pl.DataFrame, fold_as_ofs: list[dt.datetime], settings) -> dict:
    cfg = settings.candidates
    horizon = settings.horizon_days
    names = list(WEIGHTS)
    grid = [
        dict(zip(names, values, strict=True)) for values in itertools.product(*WEIGHTS.values())
    ]
    scores: dict[str, list[float]] = {json.dumps(w): [] for w in grid}
    for a in fold_as_ofs:
        users = evaluated_users(events, a, horizon)
        truth = truth_window(events, a, horizon)
        past = events_before(events, a)
        union = generate_candidates(past, users, a, cfg.model_copy(update={"max_per_user": 10**6}))
        for w in grid:
            kept = (
                union.with_columns(merged_order(cfg.model_copy(update=w)).alias("_fused"))
                .sort([USER_ID, "_fused", ITEM_ID], descending=[False, True, False])
                .group_by(USER_ID, maintain_order=True)
                .head(cfg.max_per_user)
            )
            scores[json.dumps(w)].append(per_customer_recall(kept, truth, users))
    means = {w: statistics.fmean(v) for w, v in scores.items()}
    default = json.dumps({n: getattr(cfg, n) for n in names})
    best = max(means, key=means.get)
    return {
        "default": json.loads(default),
        "default_mean": means[default],
        "default_folds": scores[default],
        "best": json.loads(best),
        "best_mean": means[best],
        "best_folds": scores[best],
        "grid_size": len(grid),
    }


def kept_features(features: list[str]) -> list[str]:
    """The windows' features less the groups benchmarks/feature_selection.py tried and did
    not keep (none when it has not run), so the learning rate is chosen for the model the
    nightly run trains."""
    path = RESULTS / "feature_selection.json"
    if not path.is_file():
        return features
    record = json.loads(path.read_text())
    dropped = {c for g, cols in record["groups"].items() if g not in record["kept"] for c in cols}
    return [f for f in features if f not in dropped]


def choose_learning_rate(events, catalog, cut, settings, work: Path, rates=LEARNING_RATES) -> dict:
    data_dir = work / f"windows_{cut:%Y-%m-%d}"
    fingerprint = {"cut": cut.isoformat(), "candidates": settings.candidates.model_dump()}
    summary = replace_cached(
        data_dir, fingerprint, lambda out: build_windows(events, catalog, cut, settings, out)
    )
    features = kept_features(summary["features"])
    out = {}
    for lr in rates:
        cfg = settings.ranker.model_copy(update={"learning_rate": lr, "num_threads": 1})
        started = time.perf_counter()
        folds = [
            cached(
                work / f"lr_{cut:%Y-%m-%d}_{lr}_fold{f}.json",
                lambda f=f, cfg=cfg: list(fold_ndcg(data_dir, f, cfg, settings, features)),
            )
            for f in range(len(summary["folds"]))
        ]
        out[str(lr)] = {
            "ndcg": [v for v, _ in folds],
            "rounds": [r for _, r in folds],
            "mean": statistics.fmean(v for v, _ in folds),
        }
        print(f"  lr {lr}: {out[str(lr)]} ({time.perf_counter() - started:.0f} s)", flush=True)
    return {
        "grid": out,
        "best": max(out, key=lambda k: out[k]["mean"]),
        "features": len(features),
    }


def render(record: dict) -> str:
    m = record["machine"]
    lines = [
        "# Where the ranking defaults come from: re-chosen on validation windows",
        "",
        f"Measured {record['measured_at']} on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_gib']} GiB), Python {m['python']}; 1-minute load average "
        f"{record['load_start']:.1f} at the start, {record['load_end']:.1f} at the end.",
        f"Command: `{record['command']}`.",
        *([record["note"], ""] if record.get("note") else [""]),
        "For each development cut T, the folds are the tuning flow's: nightly runs replayed at "
        "A_f = T - 30 days - f x 14 days (f = 0..3), each scored on [A_f, A_f + 30 days), which "
        "ends at or before T. Nothing here reads the cut's own window or 2011-07-01.",
        "",
    ]
    for cut, r in record["cuts"].items():
        folds = ", ".join(a[:10] for a in r["fold_as_ofs"])
        lines += [f"## Cut {cut} (folds at {folds})", ""]
        tau = r["tau"]
        lines += [
            "Repurchase decay tau (days), mean NDCG@10 of the repurchase baseline over the folds:",
            "",
            "| tau | " + " | ".join(tau["mean"]) + " |",
            "| --- " * (len(tau["mean"]) + 1) + "|",
            "| NDCG@10 | " + " | ".join(f"{v:.4f}" for v in tau["mean"].values()) + " |",
            "",
            f"Best: {tau['best']} (default now {REPURCHASE_TAU_DAYS}; it was 70, chosen on the "
            "development cuts).",
            "",
        ]
        if "weights" in r:
            w = r["weights"]
            lines += [
                f"Fusion weights ({w['grid_size']} combinations), mean per-customer recall of "
                "the kept merged list over the folds: default "
                f"{w['default']} {w['default_mean']:.4f}; best {w['best']} {w['best_mean']:.4f} "
                f"(per fold default {[round(v, 4) for v in w['default_folds']]}, best "
                f"{[round(v, 4) for v in w['best_folds']]}).",
                "",
            ]
        if "learning_rate" in r:
            g = r["learning_rate"]["grid"]
            lines += [
                "LightGBM learning rate, mean NDCG@10 of the early-stopped nightly model over "
                f"the folds (at most {record.get('num_boost_round', 300)} rounds):",
                "",
                "| learning rate | mean | folds | rounds |",
                "| --- | --- | --- | --- |",
                *(
                    f"| {lr} | {v['mean']:.4f} | {', '.join(f'{x:.4f}' for x in v['ndcg'])} | "
                    f"{v['rounds']} |"
                    for lr, v in g.items()
                ),
                "",
                f"Best: {r['learning_rate']['best']} (default now "
                f"{record.get('learning_rate_default', 0.05)}).",
                "",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a store with every day ingested")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nightrec-default-provenance"))
    parser.add_argument("--skip-learning-rate", action="store_true")
    parser.add_argument("--skip-weights", action="store_true")
    parser.add_argument("--note", help="a line for the results page (e.g. when steps ran)")
    parser.add_argument("--learning-rates", nargs="+", type=float, default=list(LEARNING_RATES))
    parser.add_argument(
        "--num-boost-round",
        type=int,
        help="most LightGBM rounds in the learning-rate step (default: ranker.num_boost_round)",
    )
    parser.add_argument(
        "--name",
        default="default_provenance",
        help="results name: benchmarks/results/NAME.md and NAME.json",
    )
    parser.add_argument(
        "--cuts",
        nargs="+",
        type=dt.datetime.fromisoformat,
        default=list(CUTS),
        choices=list(CUTS),
        help="development cuts (exclusive as-of instants) to choose before",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    machine = describe()
    load_start = os.getloadavg()[0]
    print(f"machine: {machine}; load average {load_start:.1f}", flush=True)
    events, catalog = load(args.db)
    settings = load_settings(home=args.work / "home")
    if args.num_boost_round:
        ranker = settings.ranker.model_copy(update={"num_boost_round": args.num_boost_round})
        settings = settings.model_copy(update={"ranker": ranker})
    cuts = {}
    for cut in args.cuts:
        fold_as_ofs = fold_as_of_list(cut, settings)
        key = f"{cut:%Y-%m-%d}"
        r: dict = {"fold_as_ofs": [a.isoformat() for a in fold_as_ofs]}
        r["tau"] = cached(
            args.work / f"tau_{key}.json",
            lambda fold_as_ofs=fold_as_ofs: choose_tau(events, fold_as_ofs, settings.horizon_days),
        )
        print(key, "tau", json.dumps(r["tau"]["mean"]), flush=True)
        if not args.skip_weights:
            r["weights"] = cached(
                args.work / f"weights_{key}.json",
                lambda fold_as_ofs=fold_as_ofs: choose_weights(events, fold_as_ofs, settings),
            )
            print(key, "weights", json.dumps(r["weights"]), flush=True)
        if not args.skip_learning_rate:
            r["learning_rate"] = choose_learning_rate(
                events, catalog, cut, settings, args.work, tuple(args.learning_rates)
            )
        cuts[key] = r
    record = {
        "benchmark": "default_provenance",
        "measured_at": dt.datetime.now().isoformat(timespec="minutes"),
        "machine": machine,
        "command": COMMAND
        + (" --skip-learning-rate" if args.skip_learning_rate else "")
        + (" --skip-weights" if args.skip_weights else "")
        + (f" --learning-rates {' '.join(map(str, args.learning_rates))}")
        + (f" --num-boost-round {args.num_boost_round}" if args.num_boost_round else "")
        + (f" --name {args.name}" if args.name != "default_provenance" else ""),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "learning_rate_default": settings.ranker.learning_rate,
        "num_boost_round": settings.ranker.num_boost_round,
        "cuts": cuts,
        "note": args.note,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2))
    (RESULTS / f"{args.name}.md").write_text(render(record))
    print(render(record))


if __name__ == "__main__":
    main()
