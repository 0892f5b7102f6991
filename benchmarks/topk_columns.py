"""Benchmark: each row's best columns, a full stable sort against the partition.

Every customer's EASE candidates (`write_ease_lists`) come from score rows as wide as EASE's
items (4,729 at a 10M-event shop, 150 kept per customer). `tasks/baselines/recommenders.py`
`_best_columns` picks them with a partition; it used to take the first columns of a stable
argsort of each whole row. Both give the same columns (checked here on every block); this
times them interleaved in one process on random score blocks, and records the medians in
benchmarks/results/topk_columns.{json,md}.

    .venv/bin/python benchmarks/topk_columns.py [--rows 2000] [--items 4729] [--top 150]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import describe  # noqa: E402
from timing import before_now_table  # noqa: E402

from tasks.baselines.recommenders import _best_columns  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def stable_sort(scores: np.ndarray, top: int) -> np.ndarray:
    """How the columns were picked before: a stable argsort of every whole row."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="customers per block")
    parser.add_argument("--items", type=int, default=4729)
    parser.add_argument("--top", type=int, default=150)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "topk_columns")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    ways = {"stable argsort (before)": stable_sort, "partition (now)": _best_columns}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    load_before = os.getloadavg()
    for _ in range(args.runs):
        scores = rng.standard_normal((args.rows, args.items))
        scores[:, : args.items // 10] = 0.0  # ties, as items a customer's row never reaches
        picked = {}
        for way, pick in ways.items():
            started = time.perf_counter()
            picked[way] = pick(scores, args.top)
            seconds[way].append(time.perf_counter() - started)
        assert np.array_equal(*picked.values()), "the two ways picked different columns"
    load_after = os.getloadavg()
    medians = {way: statistics.median(values) for way, values in seconds.items()}
    before, now = medians.values()
    result = {
        "machine": describe(),
        "rows": args.rows,
        "items": args.items,
        "top": args.top,
        "runs": args.runs,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in load_after],
        "seconds": {way: [round(v, 4) for v in values] for way, values in seconds.items()},
        "median_s": {way: round(v, 4) for way, v in medians.items()},
        "ratio": round(before / now, 2),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    machine = result["machine"]
    lines = [
        "# Each row's best columns: stable sort against partition",
        "",
        f"{machine['cpu']} ({machine['cores']} cores, {machine['memory_gib']} GiB), "
        f"Python {machine['python']}; load average before {result['load_before']}, after "
        f"{result['load_after']}. Command: `.venv/bin/python benchmarks/topk_columns.py "
        f"--rows {args.rows} --items {args.items} --top {args.top} --runs {args.runs}`. "
        f"Blocks of {args.rows:,} random score rows x {args.items:,} items (a tenth of them "
        f"tied at 0), the best {args.top} columns of each row; both ways picked the same "
        "columns on every block.",
        "",
        *before_now_table(seconds, digits=4),
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
