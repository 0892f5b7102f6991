"""Neural ranker settings compared on the validation window only (never the as-of window).

Builds the training windows before an as-of T once, then early-stops the network (no refit)
for each named configuration and prints its best NDCG@10 on the newest window (T - 30 days).
Results: benchmarks/results/neural_tuning.md (from the printed lines).

    .venv/bin/python benchmarks/neural_tuning.py --db STORE --as-of 2011-08-01 base no_user_emb
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
import torch
from ranking_quality import load

from tasks.constants import TS
from tasks.features.build import feature_columns
from tasks.rank.dataset import LABEL
from tasks.rank.kinds import fit_neural
from tasks.rank.train import training_windows
from tasks.settings import load_settings

CONFIGS: dict[str, dict] = {
    "base": {},
    "lr1e-3": {"learning_rate": 1e-3},
    "no_user_emb": {"user_buckets": 1},
    "reg": {"weight_decay": 1e-3, "dropout": 0.3},
    "full_lists": {"train_list_len": 0},
    "small": {"learning_rate": 1e-3, "user_buckets": 1, "item_dim": 16},
    "lr5e-4_nouser": {"learning_rate": 5e-4, "user_buckets": 1},
    "big_batch": {"batch_lists": 256, "user_buckets": 1},
    "lr1e-3_nouser_reg": {
        "learning_rate": 1e-3,
        "user_buckets": 1,
        "weight_decay": 1e-3,
        "dropout": 0.3,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("configs", nargs="+", choices=sorted(CONFIGS))
    args = parser.parse_args()
    as_of = dt.datetime.fromisoformat(args.as_of)
    events, catalog = load(args.db)
    events = events.filter(pl.col(TS) < as_of)
    settings = load_settings()
    frames = training_windows(events, catalog, as_of, settings).frames
    features = feature_columns(frames[0].drop(LABEL))
    for name in args.configs:
        cfg = settings.neural.model_copy(update={**CONFIGS[name], "refit": False})
        started = time.perf_counter()
        result = fit_neural(
            frames,
            events,
            features,
            settings.model_copy(update={"neural": cfg}),
            torch.device("cpu"),
        )
        row = {
            "as_of": args.as_of,
            "config": name,
            "valid_ndcg10": result.meta["valid_ndcg10"],
            "best_epoch": result.meta["best_epoch"],
            "by_epoch": [round(h["valid_ndcg10"], 4) for h in result.meta["history"]],
            "seconds": round(time.perf_counter() - started),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
