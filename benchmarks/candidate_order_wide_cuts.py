"""The wide union (popularity 100, co-purchase 100 from 50 neighbours, EASE 400) at the two
development cuts: its ceiling, the default fusion and the learned merge (tasks/candidates/
merge.py: fitted on the window 30 days before the cut, events before it only), with the
capped generation time of the default and the wide configuration one after another in one
process (default, wide, default again). Nothing is chosen here: the wide union was looked
at on the folds first (candidate_order_learned.py). Prints one JSON row per cut and writes
WORK/wide_cuts.json (benchmarks/results/candidate_order.md, section 3).

    PYTHONPATH=. .venv/bin/python benchmarks/candidate_order_wide_cuts.py --db STORE [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import candidate_order as co
import polars as pl
from ranking_quality import DEFAULT_DATA, SOURCE, load

from tasks.candidates.generate import generate_candidates
from tasks.candidates.merge import MERGE_SCORE, fit_merge_model, learned_order
from tasks.constants import USER_ID
from tasks.evaluate.backtest import served_users
from tasks.ingest.activity import order_lines
from tasks.protocol.split import protocol_users, truth_window
from tasks.settings import load_settings
from tasks.timeutil import events_before

HORIZON = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nightrec-candidate-order"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    events, _ = load(args.db)
    lines = order_lines(SOURCE, args.data)
    base = load_settings(home=args.work / "home").candidates
    wide = base.model_copy(
        update={
            "popular_per_user": 100,
            "copurchase_per_user": 100,
            "copurchase_neighbors": 50,
            "ease_per_user": 400,
        }
    )
    out = {}
    for cut in co.CUTS:
        users = protocol_users(lines, cut, HORIZON)
        past = events_before(events, cut)
        served = served_users(past, users, cut)
        truth = truth_window(events, cut, HORIZON)
        row: dict = {"load_start": os.getloadavg()[0]}
        for name, cfg in (("current", base), ("wide", wide), ("current_again", base)):
            started = time.perf_counter()
            generate_candidates(past, served, cut, cfg)
            row[f"{name}_capped_gen_s"] = round(time.perf_counter() - started, 2)
        path = args.work / f"u_wide_cut_{cut:%Y-%m-%d}.parquet"
        union, _ = co.union_at(events, served, cut, wide, path)
        lab = co.labelled(union, truth, users)
        hits = pl.col("_hit").sum().clip(upper_bound=co.N) * pl.col("_w").first()
        row["wide_ceiling"] = float(
            lab.group_by(USER_ID).agg(hits.alias("r")).get_column("r").sum()
        ) / len(users)
        row["wide_rrf"] = co.recall_of(
            lab, co.rrf_expr(base.rrf_k, base.merge_weights()), len(users)
        )
        started = time.perf_counter()
        booster = fit_merge_model(past, cut, wide)
        row["wide_learned_fit_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        ordered = learned_order(past, union, cut, booster)
        row["wide_learned_apply_s"] = round(time.perf_counter() - started, 2)
        row["wide_learned"] = co.recall_of(
            co.labelled(ordered, truth, users), pl.col(MERGE_SCORE), len(users)
        )
        row["load_end"] = os.getloadavg()[0]
        out[f"{cut:%Y-%m-%d}"] = row
        print(f"{cut:%Y-%m-%d}", json.dumps(row), flush=True)
    (args.work / "wide_cuts.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
