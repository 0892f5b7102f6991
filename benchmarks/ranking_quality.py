"""Ranking quality on the Online Retail development splits (as-of 2011-09-01 and 2011-08-01,
H = 30 days): the nightly LightGBM ranker, trained on events before T only, beside every
baseline on the same customers, with a paired bootstrap interval on the NDCG@10 difference.

Writes benchmarks/results/ranking_quality.md (summary) and one full report per as-of date.

    .venv/bin/python benchmarks/ranking_quality.py [--db STORE | --home DIR] [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
from machine import describe

from tasks.evaluate.backtest import run_backtest
from tasks.evaluate.report import write_report
from tasks.ingest.load import ingest_landing
from tasks.settings import load_settings
from tasks.store import connect, sql_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "online_retail" / "by-day"
RESULTS = ROOT / "benchmarks" / "results"
AS_OFS = (dt.datetime(2011, 9, 1), dt.datetime(2011, 8, 1))
COMMAND = ".venv/bin/python benchmarks/ranking_quality.py"


def load(db: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    with connect(db, read_only=True) as con:
        events = pl.from_arrow(
            con.execute(
                sql_text("events_snapshot"), {"as_of": dt.datetime(2100, 1, 1)}
            ).to_arrow_table()
        )
        catalog = pl.from_arrow(con.execute(sql_text("catalog_snapshot")).to_arrow_table())
    return events, catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="a store with every day ingested")
    parser.add_argument("--home", type=Path, help="where to ingest when --db is not given")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    db = args.db
    if db is None:
        home = args.home or Path(tempfile.mkdtemp(prefix="nightrec-quality-"))
        db = home / "nightrec.duckdb"
        ingest_landing(db, "online-retail", args.data, max_bad_share=0.05)
    events, catalog = load(db)
    settings = load_settings(home=Path(tempfile.mkdtemp(prefix="nightrec-quality-home-")))
    machine = describe()
    print(f"machine: {machine}")
    command = COMMAND + (f" --db {args.db}" if args.db else "")
    summary = []
    for as_of in AS_OFS:
        started = time.perf_counter()
        result = run_backtest(events, catalog, as_of, settings)
        seconds = time.perf_counter() - started
        folder = RESULTS / f"ranking_quality_as_of={as_of:%Y-%m-%d}"
        write_report(result, folder, command)
        m = result.metrics
        diff = result.ndcg_difference
        row = {
            "as_of": f"{as_of:%Y-%m-%d}",
            "users": result.users,
            "lightgbm": m["lightgbm"]["ndcg@10"],
            "best_baseline": result.best_baseline,
            "baseline": m[result.best_baseline]["ndcg@10"],
            "lift": m["lightgbm"]["ndcg@10"] / m[result.best_baseline]["ndcg@10"] - 1,
            "diff_low": diff["low"],
            "diff_high": diff["high"],
            "seconds": round(seconds, 1),
        }
        summary.append(row)
        print(json.dumps(row))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lines = [
        "# Ranking quality on the development splits",
        "",
        f"Measured {dt.datetime.now():%Y-%m-%dT%H:%M} on {machine['cpu']} ({machine['cores']} "
        f"cores, {machine['memory_gib']} GiB), Python {machine['python']}; "
        f"peak RSS {peak:.2f} GiB.",
        f"Command: `{command}`. H = 30 days, K = 10; full reports (K = 10 and 20, coverage, "
        "novelty, diversity, feature importance) in the `ranking_quality_as_of=*` folders.",
        "",
        "| as-of | users | LightGBM NDCG@10 | best baseline | its NDCG@10 | lift "
        "| 95% CI of difference | backtest s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary:
        lines.append(
            f"| {r['as_of']} | {r['users']} | {r['lightgbm']:.4f} | {r['best_baseline']} | "
            f"{r['baseline']:.4f} | {r['lift']:+.1%} | [{r['diff_low']:+.4f}, "
            f"{r['diff_high']:+.4f}] | {r['seconds']} |"
        )
    (RESULTS / "ranking_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
