"""Acceptance benchmark for "any real shop" (issue 13): a grocery chain, run as a user would.

1. Generates a synthetic grocery chain (tasks/synth/shop.py, GroceryShopConfig: weekly trips
   of 10-30 lines, purchases only, a long-tail catalog with brands, about 10% of items without
   a price) and writes it as canonical day files plus catalog.csv under --work (never the repo).
2. Runs the README's commands as subprocesses with a fresh NIGHTREC_HOME (and Prefect home):
       python -m flows.cli ingest --source canonical --path LANDING --end D
       python -m flows.cli run --date D --retrain
   with D = the last generated day - H, so H days of purchases after D are the truth. Each
   command's wall time, exit code and peak RSS (GNU time's maximum resident set size, and a
   polled sum over the process tree) are recorded; a command running past --timeout or past
   --max-rss-gib is killed and reported as such.
3. Reads the published partition of D and its manifest: users served, rows, share of rows
   with source=model, model_version, model_fallback.
4. Scores the published top-K under the protocol of DESIGN.md at T = D + 1 day: truth = the
   distinct items each customer bought in [T, T + H), customers = those with a purchase before
   T and in the window, from the generated events (every line, priced or not). The repurchase
   baseline is scored on the same customers, with a 95% paired bootstrap interval on the
   NDCG@10 difference (tasks/protocol/metrics.py).
5. Prints a table and writes benchmarks/results/any_shop.md (and .json beside it).

    PYTHONPATH=. .venv/bin/python benchmarks/any_shop.py              # the acceptance size
    PYTHONPATH=. .venv/bin/python benchmarks/any_shop.py --small      # a quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
from machine import describe

from tasks.baselines.recommenders import repurchase
from tasks.constants import EVAL_KS, EVENT_TYPE, ITEM_ID, MANIFEST_NAME, PURCHASE, TS
from tasks.protocol.metrics import evaluate_all, paired_bootstrap, per_user_metrics
from tasks.protocol.split import evaluated_users, truth_window
from tasks.synth.shop import GroceryShopConfig, generate_shop, write_landing
from tasks.timeutil import events_before

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REC_SOURCE_MODEL = "model"
GIB = 2**30

# (households, items, days): the acceptance size is >= 60k items and >= 1M order lines.
FULL = (4_300, 68_000, 150)
SMALL = (300, 5_000, 100)


@dataclass
class Step:
    """One CLI command as run by the benchmark."""

    name: str
    argv: list[str]
    exit_code: int | None = None
    wall_s: float = 0.0
    peak_rss_gib: float | None = None  # GNU time: maximum resident set size
    peak_tree_rss_gib: float = 0.0  # polled sum over the command's process tree
    killed: str | None = None  # "timeout" or "memory" when the benchmark stopped it
    tail: list[str] = field(default_factory=list)  # last lines of its stderr + stdout

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)


def _tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total


def run_step(
    step: Step, env: dict[str, str], cwd: Path, timeout_s: float, max_rss_gib: float
) -> Step:
    """Run one command under GNU time (when present), polling time and memory; kill on excess."""
    time_bin = Path("/usr/bin/time")
    rusage = cwd / f".{step.name}.time"
    argv = [str(time_bin), "-v", "-o", str(rusage), *step.argv] if time_bin.exists() else step.argv
    log_path = cwd / f"{step.name}.log"
    print(f"$ {step.command}", flush=True)
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        while proc.poll() is None:
            time.sleep(0.5)
            rss = _tree_rss_bytes(proc.pid) / GIB
            step.peak_tree_rss_gib = max(step.peak_tree_rss_gib, rss)
            over = "timeout" if time.monotonic() - start > timeout_s else None
            over = over or ("memory" if rss > max_rss_gib else None)
            if over:
                step.killed = over
                os.killpg(proc.pid, signal.SIGKILL)  # our own session: the command's tree
                proc.wait()
                break
    step.wall_s = time.monotonic() - start
    step.exit_code = proc.returncode
    if rusage.exists():
        for line in rusage.read_text().splitlines():
            if "Maximum resident set size" in line:
                step.peak_rss_gib = int(line.rsplit(":", 1)[1]) * 1024 / GIB
            if "Exit status" in line and step.killed is None:
                step.exit_code = int(line.rsplit(":", 1)[1])
    step.tail = log_path.read_text(errors="replace").splitlines()[-25:]
    killed = f", killed ({step.killed})" if step.killed else ""
    print(
        f"  exit {step.exit_code}{killed}, {step.wall_s:.1f} s, "
        f"peak RSS {step.peak_rss_gib or step.peak_tree_rss_gib:.2f} GiB",
        flush=True,
    )
    return step


def published(home: Path, run_date: dt.date) -> tuple[pl.DataFrame | None, dict[str, Any] | None]:
    """The published partition of run_date and its manifest, or None where absent."""
    part = home / "recommendations" / f"run_date={run_date.isoformat()}"
    manifest_path = part / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    files = sorted(part.glob("*.parquet")) if part.is_dir() else []
    recs = pl.read_parquet(files) if files else None
    return recs, manifest


def evaluate(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    recs: pl.DataFrame | None,
    as_of: dt.datetime,
    horizon: int,
    k: int,
    seed: int,
) -> dict[str, Any]:
    """Protocol metrics of the published lists and of repurchase on the same customers."""
    users = evaluated_users(events, as_of, horizon)
    truth = truth_window(events, as_of, horizon)
    train = events_before(events, as_of)
    ks = [x for x in EVAL_KS if x <= k] or [k]
    methods: dict[str, pl.DataFrame] = {"repurchase": repurchase(train, users, as_of, max(ks))}
    if recs is not None:
        methods = {"nightrec (published)": recs, **methods}
    metrics = {
        name: evaluate_all(frame, truth, users, train, catalog, ks)
        for name, frame in methods.items()
    }
    out: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "horizon_days": horizon,
        "ks": ks,
        "users": len(users),
        "truth_pairs": truth.height,
        "metrics": metrics,
    }
    if recs is not None and len(users):
        a = per_user_metrics(recs, truth, users, 10)["ndcg"].to_numpy()
        b = per_user_metrics(methods["repurchase"], truth, users, 10)["ndcg"].to_numpy()
        diff = paired_bootstrap(a, b, n_resamples=2000, seed=seed)
        out["ndcg@10_published_minus_repurchase"] = {
            "mean_diff": diff.mean_diff,
            "low": diff.low,
            "high": diff.high,
        }
    return out


def manifest_facts(
    recs: pl.DataFrame | None, manifest: dict[str, Any] | None, known: int
) -> dict[str, Any]:
    """What the published output says about itself, and what it holds."""
    facts: dict[str, Any] = {"partition": recs is not None, "manifest": manifest is not None}
    if recs is not None:
        facts["rows"] = recs.height
        facts["users_served"] = recs["user_id"].n_unique()
        facts["known_customers"] = known
        if "source" in recs.columns:
            model_rows = recs.filter(pl.col("source") == REC_SOURCE_MODEL).height
            facts["share_source_model"] = model_rows / recs.height if recs.height else 0.0
    if manifest is not None:
        for key in ("rows", "users", "k", "model_version", "model_choice", "model_fallback"):
            if key in manifest:
                facts[f"manifest.{key}"] = manifest[key]
    return facts


def store_facts(db_path: Path) -> dict[str, Any]:
    """Rows in the store's tables after the commands (read-only; absent tables say so)."""
    if not db_path.exists():
        return {"store": "absent"}
    import duckdb

    facts: dict[str, Any] = {}
    with duckdb.connect(str(db_path), read_only=True) as con:
        for table in ("events", "catalog", "quarantine", "ingestions"):
            try:
                facts[f"store.{table} rows"] = con.execute(
                    f"select count(*) from {table}"  # table names from the fixed list above
                ).fetchall()[0][0]
            except duckdb.Error as exc:
                facts[f"store.{table} rows"] = f"error: {str(exc).splitlines()[0]}"
        if isinstance(facts["store.catalog rows"], int):
            facts["store.catalog rows with price"] = con.execute(
                "select count(price) from catalog"
            ).fetchall()[0][0]
    return facts


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render(result: dict[str, Any]) -> str:
    """The markdown record."""
    lines = [
        "# Any shop: a synthetic grocery chain, run as the README says",
        "",
        f"Command (in the repository root): `{result['command']}`",
        "",
        f"Run at {result['started']} UTC; code `{result['code_version']}`.",
        "",
        "## Machine",
        "",
        "| key | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in result["machine"].items()]
    shop = result["shop"]
    lines += [
        "",
        "## Shop",
        "",
        "| key | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in shop.items()]
    lines += [
        "",
        "## Commands",
        "",
        "| step | command | exit | wall (s) | peak RSS (GiB, GNU time) | peak tree RSS (GiB) "
        "| killed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in result["steps"]:
        rss = f"{s['peak_rss_gib']:.2f}" if s["peak_rss_gib"] is not None else "n/a"
        lines.append(
            f"| {s['name']} | `{s['command']}` | {s['exit_code']} | {s['wall_s']:.1f} | {rss} "
            f"| {s['peak_tree_rss_gib']:.2f} | {s['killed'] or ''} |"
        )
    for s in result["steps"]:
        lines += ["", f"Last lines of `{s['name']}`:", "", "```", *s["tail"], "```"]
    lines += ["", "## Published output", "", "| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in result["published"].items()]
    ev = result["evaluation"]
    lines += [
        "",
        "## Evaluation (protocol of DESIGN.md)",
        "",
        f"T = {ev['as_of']}, H = {ev['horizon_days']} days, K = {ev['ks']}, "
        f"{ev['users']} customers (a purchase before T and in [T, T + H)), "
        f"{ev['truth_pairs']} (customer, item) truth pairs.",
        "",
    ]
    names = [
        f"{m}@{k}" for k in ev["ks"] for m in ("ndcg", "recall", "map", "hitrate", "precision")
    ] + [f"coverage@{ev['ks'][0]}"]
    lines += ["| method | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for method, values in ev["metrics"].items():
        lines.append(f"| {method} | " + " | ".join(_fmt(values[n]) for n in names) + " |")
    diff = ev.get("ndcg@10_published_minus_repurchase")
    lines.append("")
    if diff:
        lines.append(
            f"NDCG@10 published - repurchase: {diff['mean_diff']:+.4f} "
            f"(95% paired bootstrap [{diff['low']:+.4f}, {diff['high']:+.4f}], 2000 resamples)."
        )
    else:
        lines.append("No published partition: only the repurchase baseline is scored.")
    lines += ["", "## Verdict", "", result["verdict"], ""]
    return "\n".join(lines)


def verdict(steps: list[Step], facts: dict[str, Any], known: int) -> str:
    problems = []
    for s in steps:
        if s.killed:
            problems.append(f"`{s.name}` killed ({s.killed}) after {s.wall_s:.0f} s")
        elif s.exit_code != 0:
            problems.append(f"`{s.name}` exit {s.exit_code}")
    if not facts.get("partition"):
        problems.append("no published partition")
    else:
        if facts.get("users_served", 0) < known:
            problems.append(f"{facts.get('users_served')} of {known} known customers served")
        if facts.get("manifest.model_fallback"):
            problems.append(f"fallback: {facts['manifest.model_fallback']}")
        if str(facts.get("manifest.model_version", "")).startswith("baseline"):
            problems.append(f"served by {facts['manifest.model_version']}, not a model")
    # Popularity padding of a short list is allowed (README, `source`); its share is shown.
    share = f"source=model share {facts.get('share_source_model', 0.0):.3f}"
    if problems:
        return "FAIL: " + "; ".join(problems) + f" ({share})"
    return f"PASS: the model's lists for every known customer ({share})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--small", action="store_true", help=f"quick preset {SMALL}")
    parser.add_argument("--households", type=int)
    parser.add_argument("--items", type=int)
    parser.add_argument("--days", type=int, help="days generated (D = last day - horizon)")
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--null-price-share",
        type=float,
        default=GroceryShopConfig.null_price_share,
        help="share of items without a price (0 isolates the other failures)",
    )
    parser.add_argument(
        "--run-landing",
        action="store_true",
        help="run as `run --date D --retrain --landing DIR --source canonical` (the run's own "
        "ingest of D, which also loads catalog.csv)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    parser.add_argument("--max-rss-gib", type=float, default=12.0, help="kill a command above")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the CLI")
    parser.add_argument("--out", type=Path, help="markdown record (default: results/any_shop)")
    args = parser.parse_args()

    households, items, days = SMALL if args.small else FULL
    config = GroceryShopConfig(
        n_customers=args.households or households,
        n_items=args.items or items,
        days=args.days or days,
        seed=args.seed,
        null_price_share=args.null_price_share,
    )
    work = (args.work or Path(tempfile.mkdtemp(prefix="nightrec-any-shop-"))).resolve()
    if work == ROOT or ROOT in work.parents:
        parser.error(f"--work must be outside the repository ({ROOT})")
    out = args.out or RESULTS / ("any_shop_small.md" if args.small else "any_shop.md")
    work.mkdir(parents=True, exist_ok=True)
    landing, home = work / "landing", work / "home"
    if home.exists():
        parser.error(f"{home} exists: use a fresh --work so NIGHTREC_HOME starts empty")
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    code_version = _git_rev()  # at the start: the code the commands ran
    load_before = os.getloadavg()

    t0 = time.monotonic()
    shop = generate_shop(config)
    generate_s = time.monotonic() - t0
    t0 = time.monotonic()
    report = write_landing(shop, landing)
    write_s = time.monotonic() - t0
    last_day = config.start + dt.timedelta(days=config.days - 1)
    run_date = last_day - dt.timedelta(days=args.horizon)
    as_of = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time())
    events = shop.events
    known = events.filter((pl.col(TS) < as_of) & (pl.col(EVENT_TYPE) == PURCHASE))[
        "user_id"
    ].n_unique()
    ingested_lines = events.filter(pl.col(TS) < as_of).height
    shop_facts = {
        "config": (
            f"households={config.n_customers} items={config.n_items} days={config.days} "
            f"seed={config.seed} trips_per_week={config.trips_per_week} "
            f"null_price_share={config.null_price_share}"
        ),
        "order lines (all days)": events.height,
        "order lines ingested (days <= D)": ingested_lines,
        "orders": events["order_id"].n_unique(),
        "households buying": events["user_id"].n_unique(),
        "catalog items": shop.catalog.height,
        "items bought": events[ITEM_ID].n_unique(),
        "catalog items without price": shop.catalog["price"].null_count(),
        "order lines without price": events["price"].null_count(),
        "landing CSV MiB": round(sum(p.stat().st_size for p in report.files) / 2**20 + 0.0, 1),
        "generate s": round(generate_s, 1),
        "write s": round(write_s, 1),
        "run date D": run_date.isoformat(),
        "known customers at D": known,
        "landing": str(landing),
    }
    print(json.dumps(shop_facts, indent=1), flush=True)

    prefect_home = work / "prefect"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NIGHTREC_HOME": str(home),
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "INFO",  # task states in the log: where a killed run was
    }
    env.pop("NIGHTREC_CONFIG", None)
    cli = [args.python, "-m", "flows.cli"]
    ingest = ["ingest", "--source", "canonical", "--path", str(landing), "--end", str(run_date)]
    steps = [
        Step("ingest", [*cli, *ingest]),
        Step(
            "run",
            [*cli, "run", "--date", str(run_date), "--retrain"]
            + (["--landing", str(landing), "--source", "canonical"] if args.run_landing else []),
        ),
    ]
    for step in steps:
        run_step(step, env, work, args.timeout, args.max_rss_gib)
        if step.killed:
            break  # the store may be half-written; the next step would measure nothing
    load_after = os.getloadavg()

    recs, manifest = published(home, run_date)
    facts = {**manifest_facts(recs, manifest, known), **store_facts(home / "nightrec.duckdb")}
    k = int(manifest.get("k", 10)) if manifest else 10
    evaluation = evaluate(events, shop.catalog, recs, as_of, args.horizon, k, args.seed)
    result = {
        "command": " ".join(
            shlex.quote(a)
            for a in ["PYTHONPATH=.", "python", "benchmarks/any_shop.py", *sys.argv[1:]]
        ),
        "started": started,
        "code_version": code_version,
        "machine": {
            **describe(),
            "platform.machine": platform.machine(),
            "load average before (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in load_before),
            "load average after (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in load_after),
        },
        "shop": shop_facts,
        "steps": [
            {
                "name": s.name,
                "command": s.command.replace(str(work), "$WORK"),
                "exit_code": s.exit_code,
                "wall_s": s.wall_s,
                "peak_rss_gib": s.peak_rss_gib,
                "peak_tree_rss_gib": s.peak_tree_rss_gib,
                "killed": s.killed,
                "tail": [line.replace(str(work), "$WORK") for line in s.tail],
            }
            for s in steps
            if s.exit_code is not None
        ],
        "published": facts,
        "evaluation": evaluation,
    }
    result["verdict"] = verdict([s for s in steps if s.exit_code is not None], facts, known)
    text = render(result)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print(f"recorded: {out}  (work dir: {work})")
    return 0 if result["verdict"].startswith("PASS") else 1


def _git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
