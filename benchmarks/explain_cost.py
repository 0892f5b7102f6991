"""What explanations cost a scoring day: `score_users` (candidates, features, the feature
contract, LightGBM scoring, top-K, explanations, the Parquet write) on Online Retail for one
run date, with `explain.enabled` true (feature contributions of the published rows) and false
(reasons and details only), alternated in one process; the medians of the per-pair ratios.
Contributions use the default `explain.method` (path); LightGBM's pred_contrib (method shap)
is timed on a sample of the published rows and compared with path there.

The reasons and details run in both modes, so the script also times them alone (and the
co-purchase anchors that the candidate step keeps for them) to give the ratio against a
scoring day with no explanation work at all. The target (issue 17): at most +20%.

    .venv/bin/python benchmarks/explain_cost.py [--home DIR] [--date 2011-08-31] [--runs 5]

`--home` reuses (or fills) a store with Online Retail ingested; the model is trained once.
Writes benchmarks/results/explain_cost.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import polars as pl
from machine import describe

from tasks.candidates.generate import generate_candidates
from tasks.explain.reasons import (
    contribution_matrix,
    contribution_model,
    explain_rows,
    fallback_sentence,
)
from tasks.features.snapshot import take_snapshot
from tasks.ingest.load import ingest_landing
from tasks.rank import registry
from tasks.rank.kinds import load_scorer, recommend_with, register_trained, train_models
from tasks.rank.task import ModelChoice, allowed_items, score_users
from tasks.settings import ExplainSettings, Settings, load_settings
from tasks.timeutil import events_before, known_users, run_as_of

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "online_retail" / "by-day"
RESULT = ROOT / "benchmarks" / "results" / "explain_cost.md"
COMMAND = ".venv/bin/python benchmarks/explain_cost.py"
SHAP_SAMPLE = 1000


def model_rows_of(recs: pl.DataFrame) -> int:
    return recs.filter(pl.col("source") == "model").height


def _with_explain(settings: Settings, enabled: bool) -> Settings:
    return settings.model_copy(update={"explain": ExplainSettings(enabled=enabled)})


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="NIGHTREC_HOME with (or for) the store")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2011, 8, 31))
    parser.add_argument("--runs", type=int, default=5, help="pairs of scoring days")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="nightrec-explain-"))
    settings = load_settings(home=home, source="online-retail")
    machine = describe()
    print(f"machine: {machine}")
    print(f"load average before: {os.getloadavg()}")
    if not settings.db_path.exists():
        ingest_landing(settings.db_path, "online-retail", args.data, max_bad_share=0.05)
    as_of = run_as_of(args.date)
    work = home / "work" / "explain-cost"
    snapshot = take_snapshot(settings, as_of, work)
    events, catalog = snapshot.events(), snapshot.catalog()

    newest = registry.newest_before(settings.models_dir, as_of)
    if newest is None or newest.meta.get("model_kind", "lightgbm") != "lightgbm":
        seconds, trained = _timed(
            lambda: train_models(["lightgbm"], events, catalog, as_of, settings)["lightgbm"]
        )
        newest = register_trained(settings.models_dir, trained)
        print(f"trained {newest.version} in {seconds:.1f} s")
    choice = ModelChoice(newest.version, False, "benchmark")

    pairs = []
    for run in range(args.runs):
        times = {}
        for enabled in (True, False) if run % 2 == 0 else (False, True):
            report = work / f"report-{run}-{enabled}.json"
            seconds, _ = _timed(
                lambda enabled=enabled, report=report: score_users(
                    _with_explain(settings, enabled), snapshot, choice, work, report
                )
            )
            times[enabled] = seconds
        pairs.append(times)
        print(
            f"pair {run + 1}: with contributions {times[True]:.2f} s, "
            f"reasons only {times[False]:.2f} s, ratio {times[True] / times[False]:.3f}"
        )

    # The explanation steps alone, on the same inputs as score_users.
    users = known_users(events, as_of)
    allowed = allowed_items(catalog, settings.safety.forbidden_items)
    scorer = load_scorer(newest, settings)
    seen: dict[str, pl.DataFrame] = {}
    recs = recommend_with(
        scorer,
        events,
        catalog,
        users,
        as_of,
        settings,
        allowed_items=allowed,
        check_features=lambda frame: seen.__setitem__("frame", frame),
    )
    frame = seen["frame"]
    model = contribution_model(scorer)
    sentence = fallback_sentence(settings.k, True, None)

    def explain(enabled: bool) -> pl.DataFrame:
        return explain_rows(
            recs, frame, model, settings.candidates, ExplainSettings(enabled=enabled), sentence
        )

    reasons_s = statistics.median(_timed(lambda: explain(False))[0] for _ in range(args.runs))
    full_s = statistics.median(_timed(lambda: explain(True))[0] for _ in range(args.runs))

    # LightGBM's pred_contrib (method shap) on a sample of the published model rows, beside
    # the path credits of the same rows: its cost per row and how often the two agree.
    sample = (
        recs.filter(pl.col("source") == "model")
        .sample(n=min(SHAP_SAMPLE, model_rows_of(recs)), seed=0)
        .join(frame, on=["user_id", "item_id"], how="left")
    )
    matrix = sample.select(pl.col(model.features).cast(pl.Float32)).to_numpy()
    shap_s, shap = _timed(lambda: contribution_matrix(model, matrix, "shap"))
    path_s, path = _timed(lambda: contribution_matrix(model, matrix, "path"))
    top_path = np.argsort(-np.abs(path), axis=1, kind="stable")[:, :3]
    top_shap = np.argsort(-np.abs(shap), axis=1, kind="stable")[:, :3]
    top1 = float(np.mean(top_path[:, 0] == top_shap[:, 0]))
    top3 = float(
        np.mean([len(set(a) & set(b)) / 3 for a, b in zip(top_path, top_shap, strict=True)])
    )
    past = events_before(events, as_of)

    def candidates(anchors: bool) -> float:
        return _timed(
            lambda: generate_candidates(past, users, as_of, settings.candidates, anchors=anchors)
        )[0]

    anchors_extra = statistics.median(candidates(True) - candidates(False) for _ in range(3))

    on = statistics.median(p[True] for p in pairs)
    off = statistics.median(p[False] for p in pairs)
    ratio = statistics.median(p[True] / p[False] for p in pairs)
    none = off - reasons_s - max(anchors_extra, 0.0)
    model_rows = model_rows_of(recs)
    shap_all = shap_s / sample.height * model_rows
    load_after = os.getloadavg()
    print(f"load average after: {load_after}")
    lines = [
        "# What explanations cost a scoring day",
        "",
        f"Measured {dt.datetime.now().isoformat(timespec='seconds')} on {machine['cpu']} "
        f"({machine['cores']} cores, {machine['memory_gib']} GiB), Python {machine['python']}; "
        f"load average {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} "
        "(1 / 5 / 15 min) at the end.",
        f"Command: `{COMMAND} --runs {args.runs}`",
        "",
        f"Online Retail, run date {args.date} (events before {as_of:%Y-%m-%d}), model "
        f"{newest.version}, K = {settings.k}: {users.len():,} customers, "
        f"{frame.height:,} candidate rows, {recs.height:,} published rows of which "
        f"{model_rows:,} model rows get feature contributions (computed on those rows "
        "only).",
        "",
        "| scoring day (`score_users`), median of the pairs | seconds |",
        "| --- | --- |",
        f"| `explain.enabled=true` (reasons, details, top-{settings.explain.top_features} "
        f"contributions) | {on:.2f} |",
        f"| `explain.enabled=false` (reasons and details only) | {off:.2f} |",
        f"| without any explanation work (estimated: false less the two steps below) | "
        f"{none:.2f} |",
        "",
        "| step alone (median) | seconds |",
        "| --- | --- |",
        f"| `explain_rows`, reasons and details | {reasons_s:.3f} |",
        f"| `explain_rows`, with contributions (method path) | {full_s:.3f} |",
        "| co-purchase anchors in `generate_candidates` (extra) | "
        + (
            f"{anchors_extra:.3f} |"
            if anchors_extra >= 0
            else f"about 0 (measured {anchors_extra:.3f}: below the noise) |"
        ),
        f"| contributions of {sample.height:,} sampled model rows, method path | {path_s:.3f} |",
        f"| contributions of {sample.height:,} sampled model rows, method shap "
        f"(`pred_contrib=True`) | {shap_s:.2f} |",
        f"| method shap for all {model_rows:,} model rows (extrapolated) | {shap_all:.1f} |",
        "",
        f"- Median ratio of the pairs, enabled / disabled: **{ratio:.3f}** "
        f"({(ratio - 1) * 100:+.1f}%).",
        f"- Against a scoring day without any explanation work: **{on / none:.3f}** "
        f"({(on / none - 1) * 100:+.1f}%); target at most +20%.",
        f"- Method shap (LightGBM `pred_contrib=True`) would add about {shap_all:.0f} s, "
        f"{shap_all / none:.1f} times the scoring day: why the default is path.",
        f"- Path against shap on the sample: the same top feature for {top1:.0%} of the rows, "
        f"{top3:.0%} of the top 3 in common.",
        "",
        "| pair | enabled (s) | disabled (s) | ratio |",
        "| --- | --- | --- | --- |",
        *(
            f"| {i + 1} | {p[True]:.2f} | {p[False]:.2f} | {p[True] / p[False]:.3f} |"
            for i, p in enumerate(pairs)
        ),
    ]
    RESULT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
