"""A retraining day on a large grocery-like catalog: time and peak RSS per stage.

Why: on a real grocery shop (issue 13: 1.46M order lines, 2.5k households, 68k products) the
EASE candidate step tried a 29 GiB dense item x item matrix and the run served a baseline;
with EASE off a retraining day took 702 s and 4.7 GB. Target: <= 4 GiB peak RSS and <= 5 min.

The shop is generated here (no landing files, no DuckDB): households on weekly trips with
baskets of 10-30 lines, each household re-buying its own staples beside items drawn from a
Zipf popularity over the whole catalog. It is driven through the product's code path:
candidates and features for the newest training window (stages timed on their own), then
`train_models(["lightgbm"], ...)` (all windows, early stopping, validation, refit), then
`recommend_with` for every known customer at as-of (scoring).

    PYTHONPATH=. python benchmarks/large_catalog.py [--items 68000] [--households 2500]
        [--days 150] [--ease-off] [--knn] [--json out.json]

Peak RSS per stage is sampled from /proc/self/status every 20 ms while the stage runs
(VmRSS), and the process high-water mark (VmHWM) is printed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import describe
from tasks.baselines.recommenders import item_knn
from tasks.candidates.generate import generate_candidates
from tasks.constants import (
    CATEGORY,
    EVENT_TYPE,
    ITEM_ID,
    ORDER_ID,
    PRICE,
    PURCHASE,
    QUANTITY,
    SESSION_ID,
    TITLE,
    TS,
    USER_ID,
)
from tasks.features.build import build_features
from tasks.rank.dataset import known_buyers, known_users, training_as_of_dates
from tasks.rank.kinds import recommend_with, train_models
from tasks.settings import Settings

START = dt.datetime(2026, 1, 1)


def grocery_shop(
    n_items: int, n_households: int, days: int, seed: int = 7
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, catalog): purchase lines only, one order per trip."""
    rng = np.random.default_rng(seed)
    n_categories = 400
    item_category = rng.integers(0, n_categories, n_items)
    item_price = np.round(rng.lognormal(1.0, 0.7, n_items), 2)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity = rng.permutation(popularity)
    cdf = np.cumsum(popularity / popularity.sum())
    users, items, stamps, orders = [], [], [], []
    for h in range(n_households):
        n_staples = int(rng.integers(8, 40))
        staples = np.minimum(np.searchsorted(cdf, rng.random(n_staples)), n_items - 1)
        keep = rng.uniform(0.2, 0.8, n_staples)
        period = rng.choice([6.0, 7.0, 7.0, 7.0, 10.0])
        day = rng.uniform(0, period)
        trip = 0
        while day < days:
            size = int(rng.integers(10, 31))
            mine = staples[rng.random(n_staples) < keep]
            extra = max(size - mine.size, 2)
            others = np.minimum(np.searchsorted(cdf, rng.random(extra)), n_items - 1)
            basket = np.unique(np.concatenate([mine, others]))
            ts = START + dt.timedelta(days=float(day), hours=float(rng.uniform(8, 20)))
            users.append(np.full(basket.size, h))
            items.append(basket)
            stamps.append(np.full(basket.size, int(ts.timestamp() * 1e6), dtype=np.int64))
            orders.append(np.full(basket.size, h * 1000 + trip))
            trip += 1
            day += period + rng.normal(0, 1.0)
    u = np.concatenate(users)
    i = np.concatenate(items)
    events = pl.DataFrame(
        {
            USER_ID: "h" + pl.Series(u).cast(pl.Utf8).str.zfill(5),
            ITEM_ID: "p" + pl.Series(i).cast(pl.Utf8).str.zfill(6),
            EVENT_TYPE: pl.repeat(PURCHASE, u.size, eager=True),
            TS: pl.Series(np.concatenate(stamps)).cast(pl.Datetime("us")),
            QUANTITY: pl.Series(rng.integers(1, 4, u.size)),
            PRICE: pl.Series(item_price[i]),
            ORDER_ID: pl.Series(np.concatenate(orders)).cast(pl.Utf8),
            SESSION_ID: pl.repeat(None, u.size, dtype=pl.Utf8, eager=True),
        }
    ).sort(TS)
    catalog = pl.DataFrame(
        {
            ITEM_ID: pl.Series(np.arange(n_items)).cast(pl.Utf8).str.zfill(6),
            TITLE: pl.Series(np.arange(n_items)).cast(pl.Utf8),
            CATEGORY: pl.Series(item_category).cast(pl.Utf8),
            PRICE: pl.Series(item_price),
        }
    ).with_columns(("p" + pl.col(ITEM_ID)).alias(ITEM_ID), ("item " + pl.col(TITLE)).alias(TITLE))
    return events, catalog


def _rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measured(name: str, fn: Callable[[], Any], rows: list[dict]) -> Any:
    """Run fn, record wall and CPU seconds and the peak RSS sampled while it ran."""
    peak = [_rss_mib()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        out = fn()
    finally:
        done.set()
        sampler.join()
    row = {
        "stage": name,
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "peak_rss_mib": round(max(peak[0], _rss_mib()), 0),
    }
    rows.append(row)
    print(
        f"{name:<12} wall {row['wall_s']:>7.1f} s  cpu {row['cpu_s']:>7.1f} s  "
        f"peak RSS {row['peak_rss_mib']:>7.0f} MiB",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=68_000)
    parser.add_argument("--households", type=int, default=2_500)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--ease-off", action="store_true", help="ease_per_user = 0")
    parser.add_argument(
        "--knn", action="store_true", help="also time the item-kNN baseline on the window"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    machine = describe()
    machine["load_average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print("machine:", json.dumps(machine))
    print(f"polars {pl.__version__}, {pl.thread_pool_size()} threads")

    rows: list[dict] = []
    events, catalog = measured(
        "generate", lambda: grocery_shop(args.items, args.households, args.days), rows
    )
    as_of = START + dt.timedelta(days=args.days)
    print(
        f"shop: {events.height:,} order lines, {events.get_column(USER_ID).n_unique():,} "
        f"households, {events.get_column(ITEM_ID).n_unique():,} items bought of "
        f"{catalog.height:,}, {events.get_column(ORDER_ID).n_unique():,} orders; "
        f"as_of {as_of:%Y-%m-%d}"
    )
    settings = Settings(_env_file=None)
    if args.ease_off:
        settings = settings.model_copy(
            update={"candidates": settings.candidates.model_copy(update={"ease_per_user": 0})}
        )
    # The newest training window on its own: candidates, then features.
    window_as_of = training_as_of_dates(
        as_of, settings.horizon_days, settings.ranker.n_windows, settings.ranker.window_step_days
    )[0]
    past = events.filter(pl.col(TS) < window_as_of)
    users = known_buyers(past, window_as_of)
    cands = measured(
        "candidates",
        lambda: generate_candidates(past, users, window_as_of, settings.candidates),
        rows,
    )
    frame = measured("features", lambda: build_features(past, cands, catalog, window_as_of), rows)
    print(f"window {window_as_of:%Y-%m-%d}: {users.len():,} users, {frame.height:,} candidate rows")
    frame = cands = None  # let the window go before training
    if args.knn:  # the evaluate-only baseline, bounded by its similarity pairs
        measured("item-kNN", lambda: item_knn(past, users, as_of, settings.k), rows)
    trained = measured(
        "training", lambda: train_models(["lightgbm"], events, catalog, as_of, settings), rows
    )["lightgbm"]
    everyone = known_users(events, as_of)
    recs = measured(
        "scoring",
        lambda: recommend_with(trained.scorer, events, catalog, everyone, as_of, settings),
        rows,
    )
    print(f"scored {everyone.len():,} customers, {recs.height:,} rows")
    validation = trained.meta["validation"]
    metrics = {
        name: {k: round(v, 4) for k, v in m.items() if k in ("ndcg@10", "recall@10", "map@10")}
        for name, m in validation["metrics"].items()
    }
    print(f"validation at {validation['as_of']} ({validation['users']} users):")
    for name, m in metrics.items():
        print(f"  {name:<11} {m}")
    hwm = _rss_mib("VmHWM")
    day = [r for r in rows if r["stage"] in ("training", "scoring")]
    total_wall = sum(r["wall_s"] for r in day)
    total_cpu = sum(r["cpu_s"] for r in day)
    print(
        f"retraining day (training + scoring): wall {total_wall:.1f} s, cpu {total_cpu:.1f} s; "
        f"process peak RSS (VmHWM) {hwm:.0f} MiB"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "args": vars(args) | {"json": str(args.json)},
                    "lines": events.height,
                    "stages": rows,
                    "validation": metrics,
                    "day_wall_s": total_wall,
                    "day_cpu_s": total_cpu,
                    "vm_hwm_mib": round(hwm),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
