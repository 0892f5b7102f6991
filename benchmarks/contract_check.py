"""Benchmark: one feature-contract check (Great Expectations) on a shard-sized frame.

A 10M-event shard scores about 830k candidate rows, and each is checked against
`data_contracts/features.yml` before scoring. GE's pandas engine fingerprints every frame it
is given (`pandas.util.hash_pandas_object` over every cell, twice per validation) unless the
frame is above `HASH_THRESHOLD` bytes; tasks/validate/contracts.py sets that threshold to 0.
This times `check_frame` both ways, interleaved, in one process, on a generated frame that
passes the contract, and records the medians in benchmarks/results/contract_check.{json,md}.

    .venv/bin/python benchmarks/contract_check.py [--rows 830000] [--runs 5]
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
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import describe  # noqa: E402

from tasks.validate.contracts import check_frame, load_contract  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def passing_frame(rows: int, seed: int = 0) -> pl.DataFrame:
    """`rows` customer-candidate pairs whose every column satisfies the features contract."""
    rng = np.random.default_rng(seed)
    columns: dict[str, pl.Series] = {
        "user_id": pl.Series([f"u{u}" for u in rng.integers(0, rows // 10 + 1, rows)]),
        "item_id": pl.Series([f"i{i}" for i in range(rows)]),
    }
    for name, spec in load_contract("features").columns.items():
        if name in columns:
            continue
        if spec["type"] == "integer":
            columns[name] = pl.Series(name, rng.integers(0, 2, rows))
        else:
            columns[name] = pl.Series(name, rng.random(rows))
    # Pair rules: a longer window never counts fewer than a shorter one.
    columns["i_buyers_30d"] = columns["i_buyers_7d"] + 1
    columns["i_buyers_90d"] = columns["i_buyers_30d"] + 1
    columns["u_items"] = columns["u_items_90d"] + 1
    columns["ui_views"] = columns["ui_views_30d"] + 1
    return pl.DataFrame(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=830_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "contract_check")
    args = parser.parse_args()

    frame = passing_frame(args.rows)
    first = check_frame("features", frame)  # builds GE's context and suite once
    assert first.success, first.failed
    from great_expectations.execution_engine import pandas_execution_engine

    load_before = os.getloadavg()
    thresholds = {"fingerprint": 1e9, "no fingerprint": 0}
    seconds: dict[str, list[float]] = {way: [] for way in thresholds}
    for _ in range(args.runs):
        for way, threshold in thresholds.items():
            pandas_execution_engine.HASH_THRESHOLD = threshold
            started = time.perf_counter()
            report = check_frame("features", frame)
            seconds[way].append(time.perf_counter() - started)
            assert report.success
    load_after = os.getloadavg()
    medians = {way: statistics.median(values) for way, values in seconds.items()}
    result = {
        "machine": describe(),
        "rows": args.rows,
        "columns": frame.width,
        "runs": args.runs,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in load_after],
        "seconds": {way: [round(v, 3) for v in values] for way, values in seconds.items()},
        "median_s": {way: round(v, 3) for way, v in medians.items()},
        "ratio": round(medians["fingerprint"] / medians["no fingerprint"], 2),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    machine = result["machine"]
    lines = [
        "# Feature-contract check on one shard-sized frame",
        "",
        f"{machine['cpu']} ({machine['cores']} cores, {machine['memory_gib']} GiB), "
        f"Python {machine['python']}; load average before {result['load_before']}, "
        f"after {result['load_after']}.",
        "",
        f"Command: `.venv/bin/python benchmarks/contract_check.py --rows {args.rows} "
        f"--runs {args.runs}`. A generated frame of {args.rows:,} rows and {frame.width} "
        "columns that passes `data_contracts/features.yml`; `check_frame` timed both ways, "
        "interleaved, in one process.",
        "",
        "| GE batch fingerprint | median s | runs s |",
        "| --- | ---: | --- |",
        *(
            f"| {way} | {medians[way]:.3f} | {', '.join(f'{v:.3f}' for v in seconds[way])} |"
            for way in thresholds
        ),
        "",
        f"Ratio (fingerprint / none): {result['ratio']}x.",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
