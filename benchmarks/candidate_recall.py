"""Benchmark: recall of each candidate source and of the merged list on Online Retail.

For each as-of T (2011-09-01, 2011-08-01), H = 30 days: candidates are generated from the
events before T for the evaluated customers (a purchase before T and inside the window) and
compared with the distinct items they bought in [T, T + H). Recall@N counts the truth pairs
among a source's top N per customer over all truth pairs (tasks/candidates/recall.py). The
merged list is ordered by weighted reciprocal-rank fusion of the source ranks (merged_rank).
Two configurations are measured: the current defaults and the previous sources (history
top 100, same-order co-purchase top 50, popularity top 30; no EASE, no cap on the union).
For the current defaults and a wide configuration (EASE top 400, co-purchase top 100 from
50 neighbours per item, popularity top 100) it also measures what is reachable (recall@N of
a perfect order of the uncapped union, and of the whole catalog) and the learned first-stage merge
(tasks/candidates/merge.py: LightGBM binary trained on the window T - 30 days), with the
generation time of both orders taken in the same run.

Prints and records benchmarks/results/candidate_recall.{json,md}.

    .venv/bin/python benchmarks/candidate_recall.py [--db FILE | --home DIR] [--data DIR]
        [--configs current wide ...] [--no-learned] [--out STEM]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
from machine import describe

from tasks.candidates.generate import generate_candidates
from tasks.candidates.merge import LEARNED_RANK, fit_merge_model, learned_order
from tasks.candidates.recall import candidate_recall, recall_ceiling
from tasks.ingest.load import ingest_landing
from tasks.protocol.split import evaluated_users, truth_window
from tasks.settings import CandidateSettings
from tasks.store import connect

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "online_retail" / "by-day"
RESULTS = ROOT / "benchmarks" / "results"
SOURCE = "online-retail"
AS_OFS = (dt.datetime(2011, 9, 1), dt.datetime(2011, 8, 1))
HORIZON = 30
NS = (20, 50, 100, 200)
CONFIGS = {
    "current": CandidateSettings(),
    "previous": CandidateSettings(history_per_user=100, ease_per_user=0, max_per_user=10_000),
    # every source allowed more items: a larger union, to see if a learned order uses it
    "wide": CandidateSettings(
        ease_per_user=400, copurchase_per_user=100, copurchase_neighbors=50, popular_per_user=100
    ),
}
EXTRA = ("current", "wide")  # configurations whose union, ceiling and learned merge are measured
COMMAND = ".venv/bin/python benchmarks/candidate_recall.py"


def load_events(args: argparse.Namespace) -> tuple[pl.DataFrame, str]:
    """Canonical events from a ready store (--db) or one ingested (and cached) under home."""
    if args.db is not None:
        db = args.db
    else:
        home = args.home or Path(tempfile.gettempdir()) / "nightrec-candidate-recall"
        db = home / "nightrec.duckdb"
        started = time.perf_counter()
        done = ingest_landing(db, SOURCE, args.data, max_bad_share=0.05)
        print(f"ingest: {len(done)} files checked in {time.perf_counter() - started:.1f} s")
    with connect(db, read_only=True) as con:
        events = pl.from_arrow(
            con.execute(
                "select user_id, item_id, event_type, ts, quantity, price, order_id, session_id "
                "from events"
            ).to_arrow_table()
        )
    return events, str(db)


def measure(
    events: pl.DataFrame, as_of: dt.datetime, cfg: CandidateSettings, extra: bool, learned: bool
) -> dict:
    users = evaluated_users(events, as_of, HORIZON)
    truth = truth_window(events, as_of, HORIZON)
    past = events.filter(pl.col("ts") < as_of)
    started = time.perf_counter()
    candidates = generate_candidates(past, users, as_of, cfg)
    seconds = time.perf_counter() - started
    table = candidate_recall(candidates, truth, users, NS)
    run = {
        "as_of": as_of.date().isoformat(),
        "horizon_days": HORIZON,
        "users": len(users),
        "truth_pairs": int(table.get_column("truth")[0]),
        "seconds": round(seconds, 2),
        "candidates_per_user": round(candidates.height / len(users), 1),
        "recall": table.drop("users", "truth").to_dicts(),
    }
    if not extra:
        return run
    # The union every source proposes, uncapped, ordered by fusion and by the learned merge.
    started = time.perf_counter()
    union = generate_candidates(past, users, as_of, cfg.model_copy(update={"max_per_user": 10**6}))
    union_seconds = time.perf_counter() - started
    run["union_per_user"] = round(union.height / len(users), 1)
    run["ceiling"] = recall_ceiling(union, truth, users, NS).drop("users", "truth").to_dicts()
    run["union_seconds"] = round(union_seconds, 2)
    if not learned:
        return run
    started = time.perf_counter()
    booster = fit_merge_model(past, as_of, cfg)
    assert booster is not None, "no labelled window before as_of"
    ordered = learned_order(past, union, as_of, booster)
    learned_seconds = time.perf_counter() - started
    compare = candidate_recall(
        ordered.select("user_id", "item_id", LEARNED_RANK, "merged_rank"), truth, users, NS
    )
    run["union_orders"] = compare.drop("users", "truth", "candidates_per_user").to_dicts()
    run["learned_merge_seconds"] = round(learned_seconds, 2)
    run["learned_time_ratio"] = round((union_seconds + learned_seconds) / union_seconds, 2)
    return run


def _pair(row: dict, n: int = 100) -> str:
    """Pooled and per-customer recall@n of one row, e.g. `0.3584 / 0.4517`."""
    per_user = row.get(f"user_recall@{n}")
    pooled = f"{row[f'recall@{n}']:.4f}"
    return pooled if per_user is None else f"{pooled} / {per_user:.4f}"


def render(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Candidate recall on Online Retail",
        "",
        f"Measured {result['measured_at']} on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_gib']} GiB), Python {m['python']}.",
        f"Command: `{result['command']}`",
        *([result["note"]] if result.get("note") else []),
        "",
        f"Protocol: as-of T, H = {HORIZON} days, truth = distinct (customer, item) bought in "
        "[T, T + H) by the evaluated customers (a purchase before T and inside the window). "
        "Recall@N = truth pairs among a source's top N per customer / all truth pairs. "
        "`merged` is ordered by weighted reciprocal-rank fusion of the source ranks "
        "(`merged_rank`); `candidates/user` is the mean number a source proposes. "
        "`previous` = history top 100 + same-order co-purchase top 50 + popularity top 30, "
        "without EASE and without a cap on the union; `wide` = the defaults with EASE top 400, "
        "co-purchase top 100 from 50 neighbours per item and popularity top 100. A source's "
        "rows are those kept in the merged list (at most `max_per_user` per customer), so its "
        "recall here can sit below what the source reaches alone.",
        "",
    ]
    lines += [
        "## Summary: recall@100 of the merged list (target 0.5)",
        "",
        "Each cell: pooled over truth pairs / per customer (the protocol's Recall: each "
        "evaluated customer's hits / |truth|, averaged). `learned merge` is blank where the "
        "run left it out (`--no-learned`).",
        "",
        "| config | T | fused (capped) | learned merge | perfect, union | perfect, all |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in result["runs"]:
        if "ceiling" not in run:
            continue
        fused = next(r for r in run["recall"] if r["source"] == "merged")
        learned = next((r for r in run.get("union_orders", []) if r["source"] != "merged"), None)
        perfect = {r["ceiling"]: r for r in run["ceiling"]}
        cells = [
            _pair(row) if row else ""
            for row in (fused, learned, perfect["union"], perfect["all items"])
        ]
        lines.append(f"| {run['config']} | {run['as_of']} | " + " | ".join(cells) + " |")
    lines.append("")
    for run in result["runs"]:
        lines += [
            f"## {run['config']}, T = {run['as_of']}, {run['users']} customers, "
            f"{run['truth_pairs']} truth pairs",
            "",
            f"Generation {run['seconds']} s, {run['candidates_per_user']} candidates per "
            "customer after merging.",
            "",
            "| source | " + " | ".join(f"recall@{n}" for n in NS) + " | recall@all | "
            "per customer @100 | candidates/user |",
            "| --- " * (len(NS) + 4) + "|",
        ]
        for row in run["recall"]:
            cells = " | ".join(f"{row[f'recall@{n}']:.4f}" for n in NS)
            per_user = row.get("user_recall@100")
            lines.append(
                f"| {row['source']} | {cells} | {row['recall@all']:.4f} | "
                f"{'' if per_user is None else f'{per_user:.4f}'} | "
                f"{row['candidates_per_user']:.1f} |"
            )
        lines.append("")
        if "ceiling" in run:
            lines += [
                f"Reachable with a perfect order ({run['union_per_user']} union candidates per "
                "customer, uncapped), and the union ordered by fusion (`merged`) and by the "
                "learned merge (`learned_merged`, trained on the window 30 days earlier):",
                "",
                "| order | " + " | ".join(f"recall@{n}" for n in NS) + " |",
                "| --- " * (len(NS) + 1) + "|",
            ]
            for row in run["ceiling"]:
                cells = " | ".join(f"{row[f'recall@{n}']:.4f}" for n in NS)
                lines.append(f"| perfect, from {row['ceiling']} | {cells} |")
            for row in run.get("union_orders", []):
                cells = " | ".join(f"{row[f'recall@{n}']:.4f}" for n in NS)
                lines.append(f"| {row['source']} | {cells} |")
            lines.append("")
            if "learned_merge_seconds" in run:
                lines += [
                    f"Time, same run: union {run['union_seconds']} s; learned merge (second "
                    f"union at T - 30, fit, score) {run['learned_merge_seconds']} s more, so "
                    f"generation with the learned merge takes {run['learned_time_ratio']}x the "
                    "fused one.",
                    "",
                ]
    lines.append(f"Peak RSS of the whole process: {result['peak_rss_gib']} GiB.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None, help="a ready store (read only)")
    parser.add_argument("--home", type=Path, default=None, help="cache dir for the store")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument(
        "--no-learned", action="store_true", help="leave out the learned merge (the slow part)"
    )
    parser.add_argument(
        "--out", default="candidate_recall", help="results file stem in benchmarks/results"
    )
    args = parser.parse_args()
    machine = describe()
    print(f"machine: {machine}")
    events, db = load_events(args)
    print(f"store: {db}, {events.height:,} events")
    runs = []
    for name in args.configs:
        for as_of in AS_OFS:
            extra = name in EXTRA
            run = {
                "config": name,
                **measure(events, as_of, CONFIGS[name], extra, learned=not args.no_learned),
            }
            print(
                f"{name} T={run['as_of']} users={run['users']} "
                f"generation={run['seconds']} s candidates/user={run['candidates_per_user']}"
            )
            for row in run["recall"]:
                print(
                    f"  {row['source']:>7} "
                    + " ".join(f"@{n}={row[f'recall@{n}']:.4f}" for n in NS)
                    + f" all={row['recall@all']:.4f} per-user={row['candidates_per_user']:.1f}"
                )
            runs.append(run)
    result = {
        "benchmark": "candidate_recall",
        "measured_at": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "command": " ".join(
            [COMMAND, *(["--db STORE"] if args.db else [])]
            + (["--configs", *args.configs] if args.configs != list(CONFIGS) else [])
            + (["--no-learned"] if args.no_learned else [])
            + (["--out", args.out] if args.out != "candidate_recall" else [])
        ),
        "horizon_days": HORIZON,
        "settings": CandidateSettings().model_dump(),
        "runs": runs,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        # the machine may be shared: timings are only comparable within one run
        "note": "1-minute load average at the end: {:.1f} on {} cores.".format(
            os.getloadavg()[0], machine["cores"]
        ),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{args.out}.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
