"""What the run health checks add to a scoring day (issue 18: at most 10%).

One scoring day's steps run in this process, as the nightly flow runs them but without
Prefect (whose per-task overhead would make the share look smaller): snapshot, choose-model
(no retrain), score, the top-K contract, publish. The monitor's steps are timed beside them:
the model checks, the input and output checks with their store write (`run_health`), and the
report's trend plot. Each repetition gives one ratio, monitor / scoring day; the script
prints every ratio and their median, the machine and the load average.

    python benchmarks/monitor_cost.py                       # a synthetic shop (built here)
    python benchmarks/monitor_cost.py --home H --date D     # a copy of a real store (e.g. the
                                                            # Online Retail backfill's)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _shop(home: Path, days: int) -> dt.date:
    from tasks.ingest.load import ingest_catalog, ingest_landing
    from tasks.synth.shop import SynthShopConfig, generate_shop, write_landing

    config = SynthShopConfig(n_customers=2_000, n_items=400, days=days, seed=11)
    report = write_landing(generate_shop(config), home / "landing")
    ingest_catalog(home / "nightrec.duckdb", report.catalog_path)
    ingest_landing(home / "nightrec.duckdb", "canonical", home / "landing", max_bad_share=0.5)
    return config.start + dt.timedelta(days=days - 1)


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def one_day(day: dt.date, rep: int) -> tuple[float, float, dict[str, float]]:
    """(scoring day s, monitor s, per step s) of one repetition."""
    from tasks.features.snapshot import take_snapshot
    from tasks.monitor.health import model_checks, run_health
    from tasks.monitor.plots import plot_trends
    from tasks.monitor.trends import last_runs
    from tasks.publish.writer import publish_from
    from tasks.rank.task import choose_model, score_users
    from tasks.settings import load_settings
    from tasks.timeutil import run_as_of
    from tasks.validate.task import check_topk

    settings = load_settings()
    work = settings.work_dir / f"bench-{rep}"
    report = work / "report.json"
    steps: dict[str, float] = {}
    snapshot, steps["snapshot"] = _timed(take_snapshot, settings, run_as_of(day), work)
    early, steps["model checks"] = _timed(model_checks, settings, snapshot, day)
    choice, steps["choose model"] = _timed(choose_model, settings, snapshot, False)
    scored, steps["score"] = _timed(score_users, settings, snapshot, choice, work, report)
    _, steps["top-K contract"] = _timed(check_topk, settings, snapshot, scored.recs_path, report)
    run_id = f"bench-{rep}"
    _, steps["health checks"] = _timed(
        run_health, settings, snapshot, day, run_id, choice, scored, early
    )
    _, steps["publish"] = _timed(
        publish_from,
        scored.recs_path,
        settings.recommendations_dir,
        day,
        run_id,
        scored.model_version,
        settings.k,
        {},
    )
    started = time.perf_counter()
    history = last_runs(settings.db_path, day, settings.monitor.trend_runs)
    plot_trends(history, work / "trends.png", "bench")
    steps["trend plot"] = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    monitor = steps["model checks"] + steps["health checks"] + steps["trend plot"]
    return sum(steps.values()) - monitor, monitor, steps


def _checks(steps: dict[str, float]) -> float:
    return steps["model checks"] + steps["health checks"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a store to copy (default: a synthetic shop)")
    parser.add_argument("--date", type=dt.date.fromisoformat, help="the scoring day (with --home)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the results as Markdown here")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="monitor-cost-"))
    home = scratch / "home"
    if args.home:
        shutil.copytree(args.home, home, ignore=shutil.ignore_patterns("work", "*.lock"))
        day, what = args.date, f"a copy of {args.home}"
    else:
        home.mkdir()
        day, what = _shop(home, 120), "synthetic shop, 2,000 customers, 400 items, 120 days"
    os.environ["NIGHTREC_HOME"] = str(home)
    load_before = os.getloadavg()
    if not args.home:  # a model to score with: train once (not timed)
        from tasks.features.snapshot import take_snapshot
        from tasks.rank.task import choose_model
        from tasks.settings import load_settings
        from tasks.timeutil import run_as_of

        settings = load_settings()
        choose_model(settings, take_snapshot(settings, run_as_of(day), home / "work" / "t"), True)
    rows = []
    for rep in range(args.runs):
        scoring, monitor, steps = one_day(day, rep)
        rows.append((scoring, monitor, monitor / scoring, steps))
        print(
            f"run {rep + 1}: scoring day {scoring:.2f} s, monitor {monitor:.2f} s, "
            f"ratio {monitor / scoring:.3f}  " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
        )
    load_after = os.getloadavg()
    ratio = statistics.median(r[2] for r in rows)
    checks_ratio = statistics.median(_checks(r[3]) / r[0] for r in rows)
    machine = f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    load = f"load average (1, 5, 15 min) {load_before} before, {load_after} after"
    print(f"median ratio monitor / scoring day: {ratio:.3f} ({args.runs} runs), day {day}, {what}")
    print(f"median ratio checks alone (no trend plot) / scoring day: {checks_ratio:.3f}")
    print(machine)
    print(load)
    shutil.rmtree(scratch, ignore_errors=True)
    if args.out:
        steps = list(rows[0][3])
        lines = [
            f"## {what}, scoring day {day}",
            "",
            f"Machine: {machine}; {load}.",
            "",
            f"**Median ratio monitor / scoring day: {ratio:.3f}** over {args.runs} runs "
            f"(median scoring day {statistics.median(r[0] for r in rows):.2f} s, median monitor "
            f"{statistics.median(r[1] for r in rows):.2f} s); the checks alone (model checks, "
            "input and output checks with their store write, no trend plot): "
            f"**{checks_ratio:.3f}**.",
            "",
            "| run | scoring day (s) | monitor (s) | ratio | " + " | ".join(steps) + " |",
            "| --- | --- | --- | --- |" + " --- |" * len(steps),
            *(
                f"| {i + 1} | {s:.2f} | {m:.2f} | {r:.3f} | "
                + " | ".join(f"{st[k]:.2f}" for k in steps)
                + " |"
                for i, (s, m, r, st) in enumerate(rows)
            ),
            "",
        ]
        with args.out.open("a") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
