"""Benchmark: one feature-contract check (Great Expectations) on a shard-sized frame.

A 10M-event shard scores about 830k candidate rows, and each is checked against
`data_contracts/features.yml` before scoring. Two ways, interleaved, in one process:

- `one suite` (how tasks/validate/contracts.py checked before): the whole frame converted to
  pandas as it is, one suite of every expectation, GE's batch fingerprint on;
- `check_frame` (now): one suite per group of columns the expectations share, each on a frame
  of its columns alone, integers widened to Int64, no fingerprint.

GE's pandas engine hashes every cell of a batch for a fingerprint (twice per validation),
copies the whole frame minus a column's nulls for each column expectation, and checks ranges
value by value in Python for integer widths other than int64; each way's cost is in the
columns, nulls and dtypes, so the generated frame has the feature table's dtypes and a
realistic share of nulls (or pass `--parquet` with a dumped shard's features).

The published top-K's check is timed the same way: contract version 2 held the catalog and
the known customers as GE value sets, which GE serialises into each expectation's
configuration again and again (time grows with the customers); version 3 compares each id
with a derived column (`tasks/validate/topk.py`). Results:
benchmarks/results/contract_check.{json,md}.

    .venv/bin/python benchmarks/contract_check.py [--rows 830000] [--customers 97000]
        [--items 9374] [--runs 5] [--parquet F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import describe  # noqa: E402
from timing import before_now_table  # noqa: E402

from tasks.constants import REASONS  # noqa: E402
from tasks.validate.contracts import check_frame, load_contract  # noqa: E402
from tasks.validate.topk import validate_topk  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MOSTLY_NULL = {"ui_days_since_last", "ui_median_gap", "ui_cycle_ratio", "ui_due_vs_item"}


def one_suite_check(frame: pl.DataFrame) -> bool:
    """The check as it was: one suite over the whole frame, GE's fingerprint on."""
    import great_expectations as gx
    from great_expectations.execution_engine import pandas_execution_engine

    from tasks.validate.contracts import _context, _expectation_class

    contract = load_contract("features")
    context = _context()
    if "bench_frames" not in [d.name for d in context.data_sources.all().values()]:
        asset = context.data_sources.add_pandas("bench_frames").add_dataframe_asset("bench")
        asset.add_batch_definition_whole_dataframe("bench_batch")
    source = context.data_sources.get("bench_frames")
    batch_definition = source.get_asset("bench").get_batch_definition("bench_batch")
    suite = gx.ExpectationSuite(name="bench_one_suite")
    for entry in contract.expectations:
        ((expectation, kwargs),) = entry.items()
        suite.add_expectation(_expectation_class(expectation)(**kwargs))
    pandas_execution_engine.HASH_THRESHOLD = 1e9  # GE's default
    try:
        pdf = frame.select(list(contract.columns)).to_pandas()
        batch = batch_definition.get_batch(batch_parameters={"dataframe": pdf})
        result = batch.validate(suite, result_format="SUMMARY")
    finally:
        pandas_execution_engine.HASH_THRESHOLD = 0
        engine = source.get_execution_engine()
        engine.batch_manager.reset_batch_cache()
        engine._metric_cache.clear()
    return bool(result.success)


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
            columns[name] = pl.Series(name, rng.integers(0, 2, rows), dtype=pl.Int32)
        else:
            values = rng.random(rows)
            if name in MOSTLY_NULL:  # the pair's own history: absent for most candidates
                values[rng.random(rows) < 0.95] = np.nan
            columns[name] = pl.Series(name, values, nan_to_null=True)
    # Pair rules: a longer window never counts fewer than a shorter one.
    columns["i_buyers_30d"] = columns["i_buyers_7d"] + 1
    columns["i_buyers_90d"] = columns["i_buyers_30d"] + 1
    columns["u_items"] = columns["u_items_90d"] + 1
    columns["ui_views"] = columns["ui_views_30d"] + 1
    return pl.DataFrame(columns)


def value_set_topk_check(recs: pl.DataFrame, catalog: list[str], known: list[str]) -> bool:
    """The top-K row rules as contract version 2 had them: catalog items and known customers as
    GE value sets (expectation parameters)."""
    import great_expectations as gx

    from tasks.validate.contracts import _context, _expectation_class

    context = _context()
    names = [d.name for d in context.data_sources.all().values()]
    if "bench_topk_frames" not in names:
        asset = context.data_sources.add_pandas("bench_topk_frames").add_dataframe_asset("topk")
        asset.add_batch_definition_whole_dataframe("topk_batch")
    source = context.data_sources.get("bench_topk_frames")
    batch_definition = source.get_asset("topk").get_batch_definition("topk_batch")
    suite = gx.ExpectationSuite(name="bench_topk_v2")
    in_set = _expectation_class("expect_column_values_to_be_in_set")
    suite.add_expectation(in_set(column="item_id", value_set={"$PARAMETER": "catalog_items"}))
    suite.add_expectation(in_set(column="user_id", value_set={"$PARAMETER": "known_users"}))
    for entry in load_contract("recommendations").expectations:
        ((expectation, kwargs),) = entry.items()
        if "column_B" not in kwargs:  # version 3's membership pairs replace the value sets
            suite.add_expectation(_expectation_class(expectation)(**kwargs))
    parameters = {
        "k": 10,
        "catalog_items": catalog,
        "known_users": known,
        "forbidden_items": [],
        "reasons": list(REASONS),
    }
    try:
        pdf = recs.to_pandas()
        batch = batch_definition.get_batch(batch_parameters={"dataframe": pdf})
        result = batch.validate(suite, result_format="SUMMARY", expectation_parameters=parameters)
    finally:
        engine = source.get_execution_engine()
        engine.batch_manager.reset_batch_cache()
        engine._metric_cache.clear()
    return bool(result.success)


def passing_topk(customers: int, items: int, k: int = 10, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.choice(items, k, replace=False) for _ in range(customers)])
    return pl.DataFrame(
        {
            "user_id": np.repeat([f"u{u}" for u in range(customers)], k),
            "item_id": [f"i{i}" for i in picks.ravel()],
            "rank": pl.Series(np.tile(np.arange(1, k + 1), customers), dtype=pl.Int32),
            "score": np.tile(np.linspace(1.0, 0.0, k), customers),
            "reason": "popular",
            "reason_detail": "#1",
        }
    )


def time_ways(ways: dict, frame: pl.DataFrame, runs: int) -> dict[str, list[float]]:
    """Each way's seconds on `frame`, the ways interleaved, after one warm-up run each."""
    for check in ways.values():  # builds GE's context and suites once
        assert check(frame)
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(runs):
        for way, check in ways.items():
            started = time.perf_counter()
            passed = check(frame)
            seconds[way].append(time.perf_counter() - started)
            assert passed, way
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=830_000)
    parser.add_argument("--customers", type=int, default=97_000, help="top-K customers")
    parser.add_argument("--items", type=int, default=9_374, help="top-K catalog items")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parquet", type=Path, help="a shard's feature frame instead")
    parser.add_argument("--out", type=Path, default=RESULTS / "contract_check")
    args = parser.parse_args()

    frame = pl.read_parquet(args.parquet) if args.parquet else passing_frame(args.rows)
    recs = passing_topk(args.customers, args.items)
    catalog = [f"i{i}" for i in range(args.items)]
    known = [f"u{u}" for u in range(args.customers)]
    load_before = os.getloadavg()
    features = time_ways(
        {
            "one suite (before)": one_suite_check,
            "check_frame (now)": lambda f: check_frame("features", f).success,
        },
        frame,
        args.runs,
    )
    topk = time_ways(
        {
            "value sets (contract v2)": lambda r: value_set_topk_check(r, catalog, known),
            "validate_topk (v3)": lambda r: all(
                report.success for report in validate_topk(r, 10, catalog, known)
            ),
        },
        recs,
        args.runs,
    )
    load_after = os.getloadavg()
    result = {
        "machine": describe(),
        "frame": str(args.parquet.name) if args.parquet else "generated",
        "rows": frame.height,
        "columns": frame.width,
        "topk_rows": recs.height,
        "runs": args.runs,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in load_after],
        "features_s": {way: [round(v, 3) for v in values] for way, values in features.items()},
        "topk_s": {way: [round(v, 3) for v in values] for way, values in topk.items()},
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    machine = result["machine"]
    command = (
        f"`.venv/bin/python benchmarks/contract_check.py --rows {args.rows} --customers "
        f"{args.customers} --items {args.items} --runs {args.runs}"
        + (f" --parquet {args.parquet.name}`" if args.parquet else "`")
    )
    lines = [
        "# Contract checks at the size of a 10M-event shop",
        "",
        f"{machine['cpu']} ({machine['cores']} cores, {machine['memory_gib']} GiB), "
        f"Python {machine['python']}; load average before {result['load_before']}, "
        f"after {result['load_after']}. Command: {command}. Each pair of ways interleaved "
        "in one process.",
        "",
        f"## One shard's features: {result['frame']}, {frame.height:,} rows, "
        f"{frame.width} columns, passing `data_contracts/features.yml`",
        "",
        *before_now_table(features),
        f"## The published top-K: {args.customers:,} customers x 10 items of {args.items:,}",
        "",
        *before_now_table(topk),
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
