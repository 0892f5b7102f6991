"""Candidate ORDER: per-customer recall@100 of the first-stage list under other orders of the
(uncapped) union of the sources, chosen on validation folds, then measured at the cuts.

For each development cut T (2011-09-01, 2011-08-01) the folds are the tuning flow's nightly
runs replayed at A_f = T - 30 days - f x 14 days (f = 0..3, `fold_as_of_list`); each fold is
scored on [A_f, A_f + 30 days), which ends at or before T. Nothing is chosen on a cut's own
window, and 2011-07-01 is never read. Users: the protocol's (`protocol_users`, order lines
from the landing files), candidates for the served ones (an event before A_f); the others
count 0. Recall@100 per customer = each customer's truth items among the first 100 of the
order, over |truth|, averaged over every evaluated customer.

Orders compared (each over the same uncapped union of the default sources):
- `rrf`: weighted reciprocal-rank fusion (the default: `merged_order`) on a grid of rrf_k and
  source weights;
- `score`: weighted sum of each source's score divided by the customer's best score in that
  source (scores, not ranks), on a grid of weights;
- `learned`: tasks/candidates/merge.py's LightGBM binary merge, fitted on the window 30 days
  before (events before A_f only), when `--learned` is given.

The union of each (as-of, config) is cached as Parquet under --work, so a rerun resumes.
Writes benchmarks/results/candidate_order.{md,json}.

    PYTHONPATH=. .venv/bin/python benchmarks/candidate_order.py --db STORE [--work DIR]
        [--learned] [--at-cuts]
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
from ranking_quality import DEFAULT_DATA, SOURCE, load

from tasks.candidates.generate import MISSING_RANK, SOURCES, generate_candidates
from tasks.candidates.merge import MERGE_SCORE, fit_merge_model, learned_order
from tasks.constants import ITEM_ID, USER_ID
from tasks.evaluate.backtest import served_users
from tasks.ingest.activity import order_lines
from tasks.protocol.split import protocol_users, truth_window
from tasks.settings import load_settings
from tasks.timeutil import events_before
from tasks.tune.folds import fold_as_of_list

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CUTS = (dt.datetime(2011, 9, 1), dt.datetime(2011, 8, 1))  # never 2011-07-01: report-only
N = 100
COMMAND = "PYTHONPATH=. .venv/bin/python benchmarks/candidate_order.py --db STORE"
RRF_KS = (2.0, 5.0, 10.0, 20.0, 40.0)
RRF_WEIGHTS = {
    "hist": (1.0, 2.0, 4.0),
    "covis": (0.1, 0.3, 1.0),
    "ease": (0.5, 1.0, 2.0),
    "pop": (0.0, 0.2, 0.5),
}
SCORE_WEIGHTS = {
    "hist": (0.5, 1.0, 2.0, 4.0),
    "covis": (0.0, 0.25, 0.5, 1.0),
    "ease": (0.5, 1.0, 2.0),
    "pop": (0.0, 0.1, 0.3, 0.6, 1.0),
}


def union_at(events: pl.DataFrame, served: pl.Series, as_of: dt.datetime, cfg, path: Path):
    """The uncapped union for `served` at `as_of` (cached), and its generation seconds."""
    if path.is_file():
        meta = json.loads(path.with_suffix(".json").read_text())
        return pl.read_parquet(path), meta["seconds"]
    started = time.perf_counter()
    union = generate_candidates(
        events_before(events, as_of), served, as_of, cfg.model_copy(update={"max_per_user": 10**9})
    )
    seconds = time.perf_counter() - started
    union.write_parquet(path)
    path.with_suffix(".json").write_text(json.dumps({"seconds": seconds}))
    return union, seconds


def rrf_expr(k: float, w: dict[str, float]) -> pl.Expr:
    return pl.sum_horizontal(
        [
            pl.when(pl.col(f"{s}_rank") < MISSING_RANK)
            .then(w[s] / (k + pl.col(f"{s}_rank").cast(pl.Float64)))
            .otherwise(0.0)
            for s in SOURCES
        ]
    )


def normalised(union: pl.DataFrame) -> pl.DataFrame:
    """`<source>_norm`: the source's score over the customer's best score in that source."""
    return union.with_columns(
        [
            (pl.col(f"{s}_score") / pl.col(f"{s}_score").max().over(USER_ID).clip(1e-12)).alias(
                f"{s}_norm"
            )
            for s in SOURCES
        ]
    )


def score_expr(w: dict[str, float]) -> pl.Expr:
    return pl.sum_horizontal([w[s] * pl.col(f"{s}_norm") for s in SOURCES])


def top_n(frame: pl.DataFrame, order: pl.Expr, n: int = N) -> pl.DataFrame:
    return (
        frame.select(USER_ID, ITEM_ID, order.alias("_o"))
        .sort([USER_ID, "_o", ITEM_ID], descending=[False, True, False])
        .group_by(USER_ID, maintain_order=True)
        .head(n)
    )


def grid(values: dict[str, tuple]) -> list[dict[str, float]]:
    names = list(values)
    return [dict(zip(names, v, strict=True)) for v in itertools.product(*values.values())]


def orders() -> dict[str, pl.Expr]:
    out = {}
    for k in RRF_KS:
        for w in grid(RRF_WEIGHTS):
            out["rrf " + json.dumps({"k": k, **w})] = rrf_expr(k, w)
    for w in grid(SCORE_WEIGHTS):
        out["score " + json.dumps(w)] = score_expr(w)
    return out


def labelled(union: pl.DataFrame, truth: pl.DataFrame, users: pl.Series) -> pl.DataFrame:
    """The union with `_hit` (a truth pair) and `_w` (1 / the customer's |truth|), over the
    evaluated customers: recall@N per customer is then sum(_hit * _w) over the first N of
    each customer, over the evaluated customers (`per_customer_recall`, computed once)."""
    user_frame = pl.DataFrame({USER_ID: users})
    truth = truth.select(USER_ID, ITEM_ID).unique().join(user_frame, on=USER_ID, how="semi")
    sizes = truth.group_by(USER_ID).len("_n")
    return (
        normalised(union)
        .join(user_frame, on=USER_ID, how="semi")
        .join(truth.with_columns(pl.lit(1.0).alias("_hit")), on=[USER_ID, ITEM_ID], how="left")
        .join(sizes, on=USER_ID, how="left")
        .with_columns(
            pl.col("_hit").fill_null(0.0),
            (1.0 / pl.col("_n").cast(pl.Float64)).fill_null(0.0).alias("_w"),
        )
    )


def recall_of(frame: pl.DataFrame, order: pl.Expr, n_users: int, n: int = N) -> float:
    hits = (
        frame.select(USER_ID, ITEM_ID, "_hit", "_w", order.alias("_o"))
        .sort([USER_ID, "_o", ITEM_ID], descending=[False, True, False])
        .group_by(USER_ID, maintain_order=True)
        .head(n)
        .select((pl.col("_hit") * pl.col("_w")).sum())
        .item()
    )
    return float(hits) / n_users


def evaluate_orders(union, truth, users, exprs: dict[str, pl.Expr]) -> dict[str, float]:
    frame = labelled(union, truth, users)
    return {name: recall_of(frame, e, len(users)) for name, e in exprs.items()}


def chosen_orders(folds: dict[str, dict[str, float]], cfg) -> dict[str, str]:
    """The default order, and the best `rrf` and `score` orders on the mean over both cuts'
    fold means (one default for every shop, as the learning rate was chosen)."""
    cuts = list(folds)
    mean = {name: statistics.fmean(folds[c][name] for c in cuts) for name in folds[cuts[0]]}
    default = "rrf " + json.dumps({"k": cfg.rrf_k, **cfg.merge_weights()})
    return {
        "default": default,
        **{
            family: max((n for n in mean if n.startswith(family + " ")), key=mean.get)
            for family in ("rrf", "score")
        },
    }


def at_cut(events, lines, cut, settings, exprs, chosen, work: Path) -> dict:
    """Recall@100 per customer at the cut of the default and the fold-chosen orders, the
    learned merge (fitted on the window 30 days before, events before the cut only) and the
    union's ceiling; the product's generation time (capped default list) beside the learned
    merge's fit and apply time, measured here one after another."""
    cfg, horizon = settings.candidates, settings.horizon_days
    users = protocol_users(lines, cut, horizon)
    past = events_before(events, cut)
    served = served_users(past, users, cut)
    truth = truth_window(events, cut, horizon)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    generate_candidates(past, served, cut, cfg)
    product_s = time.perf_counter() - started
    union, _ = union_at(events, served, cut, cfg, work / f"union_cut_{cut:%Y-%m-%d}.parquet")
    frame = labelled(union, truth, users)
    row: dict = {
        "users": len(users),
        "served": len(served),
        "union_per_user": union.height / max(len(served), 1),
        "ceiling": float(
            frame.group_by(USER_ID)
            .agg((pl.col("_hit").sum().clip(upper_bound=N) * pl.col("_w").first()).alias("r"))
            .get_column("r")
            .sum()
        )
        / len(users),
    }
    for role, name in chosen.items():
        row[role] = {"order": name, "recall": recall_of(frame, exprs[name], len(users))}
    started = time.perf_counter()
    booster = fit_merge_model(past, cut, cfg)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    ordered = learned_order(past, union, cut, booster)
    apply_s = time.perf_counter() - started
    row["learned"] = {
        "recall": recall_of(labelled(ordered, truth, users), pl.col(MERGE_SCORE), len(users)),
        "fit_s": round(fit_s, 1),
        "apply_s": round(apply_s, 1),
    }
    row["product_generation_s"] = round(product_s, 1)
    row["load"] = round((load_before + os.getloadavg()[0]) / 2, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nightrec-candidate-order"))
    parser.add_argument("--learned", action="store_true", help="also the learned merge")
    parser.add_argument(
        "--at-cuts",
        action="store_true",
        help="then measure the fold-chosen orders (and the learned merge) at the cuts",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    machine = describe()
    load_start = os.getloadavg()
    print(f"machine: {machine}; load {load_start}", flush=True)
    events, _ = load(args.db)
    lines = order_lines(SOURCE, args.data)
    settings = load_settings(home=args.work / "home")
    cfg = settings.candidates
    exprs = orders()
    record: dict = {"folds": {}, "cuts": {}}
    for cut in CUTS:
        key = f"{cut:%Y-%m-%d}"
        per_fold = []
        for a in fold_as_of_list(cut, settings):
            users = protocol_users(lines, a, settings.horizon_days)
            past = events_before(events, a)
            served = served_users(past, users, a)
            truth = truth_window(events, a, settings.horizon_days)
            path = args.work / f"union_{a:%Y-%m-%d}.parquet"
            union, _ = union_at(events, served, a, cfg, path)
            cache = args.work / f"orders_{a:%Y-%m-%d}.json"
            scores = json.loads(cache.read_text()) if cache.is_file() else {}
            missing = {name: e for name, e in exprs.items() if name not in scores}
            if missing:
                started = time.perf_counter()
                scores |= evaluate_orders(union, truth, users, missing)
                cache.write_text(json.dumps(scores))
                print(
                    f"fold {a:%Y-%m-%d}: {len(missing)} orders in "
                    f"{time.perf_counter() - started:.0f} s",
                    flush=True,
                )
            if args.learned:
                learned_cache = args.work / f"learned_{a:%Y-%m-%d}.json"
                if learned_cache.is_file():
                    learned = json.loads(learned_cache.read_text())
                else:
                    started = time.perf_counter()
                    booster = fit_merge_model(past, a, cfg)
                    fit_s = time.perf_counter() - started
                    ordered = learned_order(past, union, a, booster)
                    frame = labelled(ordered, truth, users)
                    learned = {
                        "learned": recall_of(frame, pl.col(MERGE_SCORE), len(users)),
                        "learned_fit_s": fit_s,
                        "learned_total_s": time.perf_counter() - started,
                    }
                    learned_cache.write_text(json.dumps(learned))
                    print(f"fold {a:%Y-%m-%d}: learned {learned}", flush=True)
                scores = {**scores, "learned": learned["learned"]}
            per_fold.append(scores)
        names = [*exprs, *(["learned"] if args.learned else [])]
        means = {name: statistics.fmean(f[name] for f in per_fold) for name in names}
        record["folds"][key] = means
        best = sorted(means, key=means.get, reverse=True)[:10]
        default = "rrf " + json.dumps({"k": cfg.rrf_k, **cfg.merge_weights()})
        print(key, "default", default, means.get(default), flush=True)
        for name in best:
            print(key, f"{means[name]:.4f}", name, flush=True)
        if "learned" in means:
            print(key, "learned", f"{means['learned']:.4f}", flush=True)
    (args.work / "record.json").write_text(json.dumps(record))
    record["chosen"] = chosen_orders(record["folds"], cfg)
    print("chosen on the folds:", json.dumps(record["chosen"]), flush=True)
    if args.at_cuts:
        for cut in CUTS:
            record["cuts"][f"{cut:%Y-%m-%d}"] = at_cut(
                events, lines, cut, settings, exprs, record["chosen"], args.work
            )
            print(json.dumps(record["cuts"][f"{cut:%Y-%m-%d}"]), flush=True)
    record |= {
        "measured_at": dt.datetime.now().isoformat(timespec="minutes"),
        "machine": machine,
        "load_start": list(load_start),
        "load_end": list(os.getloadavg()),
        "command": COMMAND
        + (" --learned" if args.learned else "")
        + (" --at-cuts" if args.at_cuts else ""),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "candidate_order.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
