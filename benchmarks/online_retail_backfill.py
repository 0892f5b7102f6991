"""Benchmark: ingest Online Retail to 2011-07-31, backfill 2011-08-01..2011-08-31 nightly,
then score the 2011-08-31 run against September's purchases beside the baselines.

Prints and records (benchmarks/results/online_retail_backfill.{json,md}): time per day
(median, max; retraining and scoring-only days apart), peak RSS, NDCG@10 and friends.

    .venv/bin/python benchmarks/online_retail_backfill.py [--home DIR] [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
from machine import describe

from flows.backfill import BackfillParams, backfill_flow
from tasks.baselines.recommenders import ease, item_knn, popularity, repurchase
from tasks.ingest.load import ingest_landing
from tasks.protocol.metrics import ranking_metrics
from tasks.protocol.split import evaluated_users, truth_window
from tasks.publish.writer import partition_dir
from tasks.settings import load_settings
from tasks.store import connect

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "online_retail" / "by-day"
RESULTS = ROOT / "benchmarks" / "results"
SOURCE = "online-retail"
START, END = dt.date(2011, 8, 1), dt.date(2011, 8, 31)
AS_OF, HORIZON, K = dt.datetime(2011, 9, 1), 30, 10


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def evaluate_last_run(settings, data: Path) -> dict:
    """Load September (truth only; the runs already happened) and score the 08-31 output."""
    ingest_landing(
        settings.db_path, SOURCE, data, max_bad_share=settings.max_bad_share, start=AS_OF.date()
    )
    with connect(settings.db_path) as con:
        events = pl.from_arrow(
            con.execute(
                "select user_id, item_id, event_type, ts, quantity, price, order_id from events"
            ).to_arrow_table()
        )
    users = evaluated_users(events, AS_OF, HORIZON)
    truth = truth_window(events, AS_OF, HORIZON)
    train = events.filter(pl.col("ts") < AS_OF)
    recs = pl.read_parquet(partition_dir(settings.recommendations_dir, END) / "*.parquet")
    methods = {"nightrec (published run 2011-08-31)": recs}
    for name, fn in {
        "popularity": popularity,
        "repurchase": repurchase,
        "item-kNN": item_knn,
        "EASE": ease,
    }.items():
        methods[name] = fn(train, users, AS_OF, K)
    table = {}
    for name, method_recs in methods.items():
        metrics = ranking_metrics(method_recs, truth, users, K)
        metrics["items_covered"] = (
            method_recs.filter(pl.col("user_id").is_in(users.implode()) & (pl.col("rank") <= K))
            .get_column("item_id")
            .n_unique()
        )
        table[name] = metrics
    return {
        "as_of": AS_OF.date().isoformat(),
        "horizon_days": HORIZON,
        "k": K,
        "users": len(users),
        "metrics": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="scratch NIGHTREC_HOME")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="nightrec-bench-"))
    settings = load_settings(home=home)
    machine = describe()
    print(f"machine: {machine}")
    print(f"home: {home}")

    started = time.perf_counter()
    ingested = ingest_landing(
        settings.db_path,
        SOURCE,
        args.data,
        max_bad_share=settings.max_bad_share,
        end=START - dt.timedelta(days=1),
    )
    ingest_seconds = time.perf_counter() - started
    print(
        f"ingested {len(ingested)} files up to {START - dt.timedelta(days=1)} "
        f"in {ingest_seconds:.1f} s"
    )

    rows = backfill_flow(
        BackfillParams(
            start=START,
            end=END,
            landing_dir=str(args.data),
            source=SOURCE,
            home=str(home),
            force=True,
        )
    )
    for row in rows:
        print(
            f"{row['run_date']}: {row['seconds']:6.1f} s  retrained={row['retrained']}  "
            f"users={row['users']:,}  rows={row['rows']:,}"
        )
    retrain = [r["seconds"] for r in rows if r["retrained"]]
    scoring = [r["seconds"] for r in rows if not r["retrained"]]
    evaluation = evaluate_last_run(settings, args.data)
    result = {
        "benchmark": "online_retail_backfill",
        "measured_at": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "ingest": {"files": len(ingested), "seconds": round(ingest_seconds, 1)},
        "backfill": {
            "days": len(rows),
            "retrain_days": len(retrain),
            "retrain_seconds_median": round(statistics.median(retrain), 1) if retrain else None,
            "retrain_seconds_max": round(max(retrain), 1) if retrain else None,
            "scoring_seconds_median": round(statistics.median(scoring), 1) if scoring else None,
            "scoring_seconds_max": round(max(scoring), 1) if scoring else None,
            "all_seconds_median": round(statistics.median(r["seconds"] for r in rows), 1),
            "per_day": rows,
        },
        "peak_rss_gib": round(peak_rss_gib(), 2),
        "evaluation": evaluation,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "online_retail_backfill.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "online_retail_backfill.md").write_text(render(result))
    print(render(result))


def render(result: dict) -> str:
    b, e = result["backfill"], result["evaluation"]
    lines = [
        "# Online Retail backfill benchmark",
        "",
        f"Measured {result['measured_at']} on {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores, {result['machine']['memory_gib']} GiB), "
        f"Python {result['machine']['python']}.",
        "Command: `.venv/bin/python benchmarks/online_retail_backfill.py`",
        "",
        f"- ingest {result['ingest']['files']} daily files (2010-12-01..2011-07-31): "
        f"{result['ingest']['seconds']} s",
        f"- backfill {b['days']} days 2011-08-01..2011-08-31: retraining days "
        f"({b['retrain_days']}) median {b['retrain_seconds_median']} s, max "
        f"{b['retrain_seconds_max']} s (target <= 90 s); scoring-only days median "
        f"{b['scoring_seconds_median']} s, max {b['scoring_seconds_max']} s (target <= 30 s)",
        f"- peak RSS of the whole process: {result['peak_rss_gib']} GiB (target <= 2 GiB)",
        "",
        f"Evaluation: as-of {e['as_of']}, H = {e['horizon_days']} days, K = {e['k']}, "
        f"{e['users']} evaluated customers (non-product codes such as POST are filtered at "
        "ingestion, so the count differs slightly from baselines.md's 967).",
        "",
        "| method | NDCG@10 | Recall@10 | MAP@10 | HitRate@10 | Precision@10 | items covered |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in e["metrics"].items():
        lines.append(
            f"| {name} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['map@10']:.4f} | "
            f"{m['hitrate@10']:.4f} | {m['precision@10']:.4f} | {m['items_covered']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
