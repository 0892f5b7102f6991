"""Learned first-stage merge variants and wider unions on the validation folds (the
exploration behind benchmarks/results/candidate_order.md; nothing here reads a cut's window).

For each development cut T and each fold A_f = T - 30 d - f x 14 d (f = 0..3), on the
protocol's users at A_f (candidates for the served ones), per-customer recall@100 of:

- `variants`: tasks/candidates/merge.py's LightGBM merge fitted on the union at A_f - lag
  (labels: purchases in [A_f - lag, A_f), events before A_f only): `base` (its features),
  `norm` (plus each source's score over the customer's best in that source), two training
  windows (lags 30 and 44), a lambdarank objective, 30 instead of 100 rounds;
- `wide`: unions with deeper sources (popularity 100; + co-purchase 100 from 50 neighbours;
  + EASE 400), each with its ceiling (a perfect order), the default fusion, the fold-chosen
  score fusion and the learned merge (norm, 30 rounds) fitted on the same union 30 days
  earlier, and its generation seconds (not clean: the machine was shared).

Writes WORK/learned_variants.json and WORK/learned_wide.json.

    PYTHONPATH=. .venv/bin/python benchmarks/candidate_order_learned.py --db STORE
        [--work DIR] [--mode variants wide]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import candidate_order as co
import lightgbm as lgb
import numpy as np
import polars as pl
from ranking_quality import DEFAULT_DATA, SOURCE, load

from tasks.candidates.merge import merge_feature_columns, merge_features
from tasks.constants import ITEM_ID, USER_ID
from tasks.evaluate.backtest import served_users
from tasks.ingest.activity import order_lines
from tasks.protocol.split import evaluated_users, protocol_users, truth_window
from tasks.settings import load_settings
from tasks.timeutil import events_before
from tasks.tune.folds import fold_as_of_list

CUTS = co.CUTS
SCORE_CHOSEN = {"hist": 4.0, "covis": 1.0, "ease": 2.0, "pop": 1.0}  # candidate_order.md
VARIANTS = [
    ("base", (30,), 100),
    ("norm", (30,), 100),
    ("norm", (30, 44), 100),
    ("rank", (30,), 100),
    ("norm", (30,), 30),
]


def fit(frame: pl.DataFrame, variant: str, rounds: int) -> tuple[lgb.Booster, list[str]]:
    frame = frame.sort(USER_ID, ITEM_ID)
    feats = [c for c in merge_feature_columns(frame) if c != "label" and not c.startswith("_")]
    if variant == "base":
        feats = [c for c in feats if not c.endswith("_norm")]
    params = {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_data_in_leaf": 50,
        "seed": 42,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
        "num_threads": 1,
    }
    kw = {}
    if variant == "rank":
        params |= {"objective": "lambdarank", "lambdarank_truncation_level": 100}
        kw["group"] = frame.group_by(USER_ID, maintain_order=True).len().get_column("len")
    data = lgb.Dataset(
        frame.select(feats).to_numpy().astype(np.float32),
        label=frame.get_column("label").to_numpy(),
        feature_name=feats,
        **kw,
    )
    return lgb.train(params, data, num_boost_round=rounds), feats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nightrec-candidate-order"))
    parser.add_argument("--mode", nargs="+", default=["variants", "wide"])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    events, _ = load(args.db)
    lines = order_lines(SOURCE, args.data)
    settings = load_settings(home=args.work / "home")
    base = settings.candidates
    configs = {
        "current": base,
        "pop100": base.model_copy(update={"popular_per_user": 100}),
        "pop100_covis100": base.model_copy(
            update={"popular_per_user": 100, "copurchase_per_user": 100, "copurchase_neighbors": 50}
        ),
        "wide": base.model_copy(
            update={
                "popular_per_user": 100,
                "copurchase_per_user": 100,
                "copurchase_neighbors": 50,
                "ease_per_user": 400,
            }
        ),
    }

    def union(name, cfg, a, users):
        path = args.work / f"u_{name}_{a:%Y-%m-%d}_{len(users)}.parquet"
        return co.union_at(events, users, a, cfg, path)

    def train_frame(name, cfg, a, lag):
        """The union at a - lag for the customers with a purchase before and in [a - lag,
        a), labelled by those purchases; features from events before a - lag."""
        t = a - dt.timedelta(days=lag)
        past = events_before(events, a)
        u, _ = union(name, cfg, t, evaluated_users(past, t, lag))
        labels = truth_window(past, t, lag).with_columns(pl.lit(1).alias("label"))
        return (
            co.normalised(merge_features(past, u, t))
            .join(labels, on=[USER_ID, ITEM_ID], how="left")
            .with_columns(pl.col("label").fill_null(0))
        )

    def learned_recall(booster, feats, past, u, a, lab, n_users):
        now = co.normalised(merge_features(past, u, a))
        scores = booster.predict(now.select(feats).to_numpy().astype(np.float32))
        frame = (
            now.select(USER_ID, ITEM_ID)
            .with_columns(pl.Series("_s", scores))
            .join(lab.select(USER_ID, ITEM_ID, "_hit", "_w"), on=[USER_ID, ITEM_ID])
        )
        return co.recall_of(frame, pl.col("_s"), n_users)

    out: dict = {mode: {} for mode in args.mode}
    for cut in CUTS:
        res: dict = {mode: {} for mode in args.mode}
        for a in fold_as_of_list(cut, settings):
            users = protocol_users(lines, a, settings.horizon_days)
            past = events_before(events, a)
            served = served_users(past, users, a)
            truth = truth_window(events, a, settings.horizon_days)
            if "variants" in args.mode:
                u, _ = co.union_at(
                    events, served, a, base, args.work / f"union_{a:%Y-%m-%d}.parquet"
                )
                lab = co.labelled(u, truth, users)
                for variant, lags, rounds in VARIANTS:
                    started = time.perf_counter()
                    frame = pl.concat(
                        [train_frame("current", base, a, lag) for lag in lags],
                        how="diagonal_relaxed",
                    )
                    booster, feats = fit(frame, variant, rounds)
                    fit_s = time.perf_counter() - started
                    rec = learned_recall(booster, feats, past, u, a, lab, len(users))
                    key = f"{variant} lags={list(lags)} rounds={rounds}"
                    res["variants"].setdefault(key, []).append(rec)
                    print(f"{a:%Y-%m-%d} {key}: {rec:.4f} (fit {fit_s:.1f} s)", flush=True)
            if "wide" in args.mode:
                for name, cfg in configs.items():
                    u, secs = union(name, cfg, a, served)
                    lab = co.labelled(u, truth, users)
                    ceiling = float(
                        lab.group_by(USER_ID)
                        .agg(
                            (
                                pl.col("_hit").sum().clip(upper_bound=co.N) * pl.col("_w").first()
                            ).alias("r")
                        )
                        .get_column("r")
                        .sum()
                    ) / len(users)
                    booster, feats = fit(train_frame(name, cfg, a, 30), "norm", 30)
                    row = {
                        "ceiling": ceiling,
                        "rrf": co.recall_of(
                            lab, co.rrf_expr(base.rrf_k, base.merge_weights()), len(users)
                        ),
                        "score": co.recall_of(lab, co.score_expr(SCORE_CHOSEN), len(users)),
                        "learned": learned_recall(booster, feats, past, u, a, lab, len(users)),
                        "gen_s": secs,
                        "per_user": u.height / len(served),
                    }
                    res["wide"].setdefault(name, []).append(row)
                    print(f"{a:%Y-%m-%d} {name}: {json.dumps(row)}", flush=True)
        key = f"{cut:%Y-%m-%d}"
        if "variants" in res:
            out["variants"][key] = {
                k: {"folds": v, "mean": statistics.fmean(v)} for k, v in res["variants"].items()
            }
        if "wide" in res:
            out["wide"][key] = {
                name: {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
                for name, rows in res["wide"].items()
            }
        print(key, json.dumps({m: out[m].get(key) for m in out}), flush=True)
    for mode, value in out.items():
        (args.work / f"learned_{mode}.json").write_text(json.dumps(value, indent=1))


if __name__ == "__main__":
    main()
