"""Ranking quality on the Online Retail development cuts (as-of 2011-09-01 and 2011-08-01)
and the report-only cut 2011-07-01, H = 30 days: the nightly rankers, trained on events
before T only, beside every baseline on the same customers, with a paired bootstrap interval
on the NDCG@10 difference, and the per-customer recall of the candidates they rank.

The user set is the protocol's (DESIGN.md): every customer with an order line before T and
one in [T, T + H), fee lines (POST, M, ...) included, read from the landing files through
the ingestion adapter (tasks/ingest/activity.py), so it does not depend on which stock
codes become items. Customers the nightly run does not serve, and those who bought no item
in the window, count with zeros; the summary says how many.

2011-07-01 is report-only: no default, weight or source set is ever chosen on it (nor on
the other two cuts: defaults are chosen on validation windows before each cut, see
benchmarks/default_provenance.py). The default run measures all three cuts.

Writes benchmarks/results/ranking_quality.md (summary) and one full report per as-of date.

    .venv/bin/python benchmarks/ranking_quality.py [--db STORE | --home DIR] [--data DIR]
        [--as-of YYYY-MM-DD ...]
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

from tasks.candidates.recall import merged_recall_summary
from tasks.evaluate.backtest import run_backtest, served_users
from tasks.evaluate.report import write_report
from tasks.ingest.activity import check_covers, order_lines
from tasks.ingest.load import ingest_landing
from tasks.protocol.split import protocol_users, truth_window
from tasks.rank.kinds import AUTO, KINDS
from tasks.settings import load_settings
from tasks.store import connect, sql_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "online_retail" / "by-day"
RESULTS = ROOT / "benchmarks" / "results"
# development cuts, then the report-only one (never used for any choice)
AS_OFS = (dt.datetime(2011, 9, 1), dt.datetime(2011, 8, 1), dt.datetime(2011, 7, 1))
REPORT_ONLY = {dt.datetime(2011, 7, 1)}
SOURCE = "online-retail"
RECALL_N = 100
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
    parser.add_argument(
        "--name",
        default="ranking_quality",
        help="results name: benchmarks/results/NAME.md, NAME.json and NAME_as_of=* folders",
    )
    parser.add_argument(
        "--as-of",
        nargs="+",
        type=dt.datetime.fromisoformat,
        default=list(AS_OFS),
        help="exclusive as-of instants (default: the three cuts)",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=[*sorted(KINDS), AUTO],
        default=[*sorted(KINDS), AUTO],
        help="model kinds beside LightGBM (default: every kind, and auto: trained as "
        "ranker.kind=auto trains them, the row auto being the kind it would serve)",
    )
    args = parser.parse_args()
    db = args.db
    if db is None:
        home = args.home or Path(tempfile.mkdtemp(prefix="nightrec-quality-"))
        db = home / "nightrec.duckdb"
        ingest_landing(db, SOURCE, args.data, max_bad_share=0.05)
    events, catalog = load(db)
    lines = order_lines(SOURCE, args.data)
    check_covers(lines, events)
    settings = load_settings(home=Path(tempfile.mkdtemp(prefix="nightrec-quality-home-")))
    machine = describe()
    print(f"machine: {machine}")
    command = COMMAND + (" --db STORE" if args.db else "")
    if args.name != "ranking_quality":
        command += f" --name {args.name}"
    if list(args.as_of) != list(AS_OFS):
        command += " --as-of " + " ".join(f"{a:%Y-%m-%d}" for a in args.as_of)
    if sorted(args.kinds) != sorted([*KINDS, AUTO]):
        command += " --kinds " + " ".join(args.kinds)
    auto = AUTO in args.kinds
    kinds = tuple(k for k in args.kinds if k != AUTO)
    summary = []
    for as_of in args.as_of:
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        result = run_backtest(events, catalog, as_of, settings, kinds=kinds, lines=lines, auto=auto)
        seconds = time.perf_counter() - started
        folder = RESULTS / f"{args.name}_as_of={as_of:%Y-%m-%d}"
        write_report(result, folder, command)
        past = events.filter(pl.col("ts") < as_of)
        users = protocol_users(lines, as_of, settings.horizon_days)
        recall = merged_recall_summary(
            past,
            truth_window(events, as_of, settings.horizon_days),
            users,
            served_users(past, users, as_of),
            as_of,
            settings.candidates,
            RECALL_N,
        )
        m = result.metrics
        diff = result.ndcg_difference
        row = {
            "as_of": f"{as_of:%Y-%m-%d}",
            "role": "report only" if as_of in REPORT_ONLY else "development",
            "users": result.users,
            "unserved": result.unserved,
            "without_truth": result.without_truth,
            "kinds": {
                kind: m[kind]["ndcg@10"]
                for kind in ("lightgbm", *result.kind_meta, *([AUTO] if auto else []))
            },
            "vs_best_baseline": result.baseline_differences,
            "auto": {
                key: result.auto_selection[key]
                for key in ("winner", "why", "validation_ndcg", "validation_window")
                if key in result.auto_selection
            }
            | (
                {"network": result.auto_selection["network"]["why"]}
                if result.auto_selection
                else {}
            ),
            "lightgbm": m["lightgbm"]["ndcg@10"],
            "best_baseline": result.best_baseline,
            "baseline": m[result.best_baseline]["ndcg@10"],
            "lift": m["lightgbm"]["ndcg@10"] / m[result.best_baseline]["ndcg@10"] - 1,
            "diff_low": diff["low"],
            "diff_high": diff["high"],
            "recall": recall,
            "seconds": round(seconds, 1),
            "load": round((load_before + os.getloadavg()[0]) / 2, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "command": command,
            "measured_at": f"{dt.datetime.now():%Y-%m-%dT%H:%M}",
        }
        (folder / "summary_row.json").write_text(json.dumps(row, indent=2))
        print(json.dumps(row), flush=True)
    # one row per cut, from this run or an earlier one (cuts may run as separate processes)
    for as_of in AS_OFS:
        path = RESULTS / f"{args.name}_as_of={as_of:%Y-%m-%d}" / "summary_row.json"
        if path.is_file():
            summary.append(json.loads(path.read_text()))
    peak = max(r["peak_rss_gib"] for r in summary)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=2))
    lines_md = render(summary, machine, command, peak, args.name)
    (RESULTS / f"{args.name}.md").write_text(lines_md)
    print(lines_md)


def render(
    summary: list[dict], machine: dict, command: str, peak: float, name: str = "ranking_quality"
) -> str:
    kinds = sorted({k for r in summary for k in r["kinds"] if k != "lightgbm"})
    lines = [
        "# Ranking quality on the development cuts (and the report-only cut)",
        "",
        f"Measured {dt.datetime.now():%Y-%m-%dT%H:%M} on {machine['cpu']} ({machine['cores']} "
        f"cores, {machine['memory_gib']} GiB), Python {machine['python']}; "
        f"peak RSS {peak:.2f} GiB (the largest of the cuts' processes).",
        f"Command: `{command}` (each cut's own command and time in its row of "
        f"`{name}.json`). H = 30 days, K = 10; full reports (K = 10 and 20, coverage, "
        f"novelty, diversity, feature importance) in the `{name}_as_of=*` folders.",
        "",
        "Users: the protocol's (DESIGN.md), every customer with an order line before T and one "
        "in [T, T + H), fee lines such as POST included (read from the landing files through "
        "the ingestion adapter). `unserved`: no event before T, so the nightly run publishes "
        "nothing for them and the models count 0 for them (the baselines serve them as "
        "anyone). `no item`: only fee lines in the window, an empty truth, 0 for every method. "
        "The truth is every item bought in the window as loaded (fee lines are no items), "
        "never limited to what the ranker may recommend.",
        "",
        "**2011-07-01 is report-only**: nothing (default, weight, source set) is chosen on it; "
        "the defaults are chosen on validation windows before each development cut "
        "(benchmarks/results/default_provenance.md), never on a cut.",
        "",
        "| as-of | role | users | unserved | no item | LightGBM NDCG@10 | "
        + "".join(f"{k} NDCG@10 | " for k in kinds)
        + "best baseline | its NDCG@10 | LightGBM lift | 95% CI of difference | "
        f"candidate recall@{RECALL_N} per customer | union ceiling@{RECALL_N} | backtest s "
        "| load avg |",
        "| --- " * (15 + len(kinds)) + "|",
    ]
    for r in summary:
        rec = r["recall"]
        lines.append(
            f"| {r['as_of']} | {r['role']} | {r['users']} | {r['unserved']} | "
            f"{r['without_truth']} | {r['lightgbm']:.4f} | "
            + "".join(f"{r['kinds'][k]:.4f} | " if k in r["kinds"] else "not run | " for k in kinds)
            + f"{r['best_baseline']} | {r['baseline']:.4f} | {r['lift']:+.1%} | "
            f"[{r['diff_low']:+.4f}, {r['diff_high']:+.4f}] | "
            f"{rec[f'merged_user_recall@{RECALL_N}']:.4f} | "
            f"{rec[f'union_ceiling_user_recall@{RECALL_N}']:.4f} | {r['seconds']} | {r['load']} |"
        )
    lines += [
        "",
        f"Candidate recall@{RECALL_N} per customer is the protocol's Recall (each customer's "
        "truth items among the first "
        f"{RECALL_N} of the merged candidate list, over |truth|, averaged over every evaluated "
        "customer, unserved and no-item ones counting 0); the union ceiling is what a perfect "
        "order of every candidate any source proposes (uncapped) would reach "
        "(tasks/candidates/recall.py, as benchmarks/candidate_recall.py).",
        "",
    ]
    if any(r.get("vs_best_baseline") for r in summary):
        lines += [
            "## Every kind against the best baseline",
            "",
            "Each model row minus the best baseline on NDCG@10, 95% paired bootstrap interval "
            "over the customers (2000 resamples); `auto` is the kind `ranker.kind=auto` would "
            "serve after a retrain at T (trained through its own code path: the network and "
            "the blend only within `neural.auto_budget_s` and `neural.auto_memory_mib`, the "
            "winner by validation NDCG on the window before T).",
            "",
            "| as-of | model | NDCG@10 | minus best baseline | 95% CI | validation NDCG@10 |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in summary:
            valid = r.get("auto", {}).get("validation_ndcg", {})
            for model, d in r.get("vs_best_baseline", {}).items():
                shown = r["auto"]["winner"] if model == AUTO else model
                lines.append(
                    f"| {r['as_of']} | {model}{f' ({shown})' if model == AUTO else ''} | "
                    f"{r['kinds'][model]:.4f} | {d['mean_diff']:+.4f} | "
                    f"[{d['low']:+.4f}, {d['high']:+.4f}] | "
                    + (f"{valid[shown]:.4f}" if shown in valid else "")
                    + " |"
                )
        lines.append("")
        for r in summary:
            if r.get("auto"):
                a = r["auto"]
                lines.append(
                    f"- {r['as_of']}: auto serves **{a['winner']}**: {a['why']} (validation "
                    f"window {a['validation_window'][:10]}); {a['network']}."
                )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
