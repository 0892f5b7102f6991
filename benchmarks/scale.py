"""Benchmark: time and peak memory of a nightly run as the shop grows (issue 14, "Scale").

For each named size (events in the shop: 0.3M, 1M, 3M, 10M, 30M) it builds the project's
synthetic shop (tasks/synth/shop.py) with enough customers for that many events, writes it as
landing files once (cached under --work, keyed by config; generation is never timed), and
then, with a fresh NIGHTREC_HOME, runs three commands as subprocesses:

1. `nightrec ingest --source canonical --path LANDING --end D0`  (all days but the last two;
   timed and reported, not a "day")
2. `nightrec run --date D1 --retrain --landing LANDING --source canonical`   (retraining day)
3. `nightrec run --date D2 --no-retrain --landing LANDING --source canonical` (scoring day)

While a command runs, a thread samples the RSS of its process tree (the command and every
descendant, e.g. Prefect's ephemeral server) every --sample-s seconds from /proc, and another
reads its stderr as it arrives: the `nightrec.progress: <stage>: started / done in S s` lines
mark the stages (ingest-day, snapshot, choose-model, score, check-top-k, publish), and each
RSS sample is attributed to the stages active when it was taken (time.monotonic for both).
A command that runs past --timeout-s or whose tree passes --max-rss-gib is killed and recorded
as such; the benchmark goes on (larger sizes are skipped unless --keep-going).

Growth exponents: least squares of log(seconds) and log(peak MiB) on log(events) across the
sizes that ran (numpy.polyfit), per day kind, overall and per stage. 1.0 = linear.

Writes OUT.md and OUT.json (default benchmarks/results/scale.{md,json}).

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py --sizes 0.3M 1M 3M 10M \
        [--work /tmp/nightrec-scale] [--timeout-s 3600] [--max-rss-gib 16] [--env KEY=VALUE]

Shop shape: `--days` (120) of history, customers derived from the measured events per
customer per day, items = --items-per-sqrt-customer x sqrt(customers) (catalogs grow slower
than traffic), 20 categories. Shops larger than --block-events are drawn in customer blocks
(one catalog, each block its own customers from its own seed stream), so generating 30M events
never holds them all in one frame.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import multiprocessing
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "nightrec-scale"
DEFAULT_SIZES = ("0.3M", "1M", "3M", "10M")
STAGES = (
    "ingest-day",
    "snapshot",
    "model-checks",
    "choose-model",
    "score",
    "check-top-k",
    "health",
    "publish",
)
DAY_KINDS = ("retrain", "score")
MIB = 1024.0  # KiB per MiB
OUTSIDE = "(outside stages)"
PROBE_CUSTOMERS = 2000  # the small shop the events/customer/day ratio is measured on
N_CATEGORIES = 20
SEED = 7

PROGRESS = re.compile(
    r"^(?P<clock>\d\d:\d\d:\d\d)\s+\S+\s+nightrec\.progress:\s+(?P<stage>[\w.-]+):\s+"
    r"(?:(?P<started>started)|done in (?P<done>[\d.]+) s|failed after (?P<failed>[\d.]+) s)"
)
MARK = re.compile(
    r"^\d\d:\d\d:\d\d\s+\S+\s+(?P<logger>nightrec\.(?:rank|flow)[\w.]*):\s+(?P<msg>.*)"
)


# --- parsing and attribution (pure: tested in tests/test_scale_benchmark.py) ---------------


@dataclasses.dataclass
class StageSpan:
    stage: str
    start: float  # monotonic
    end: float | None = None  # monotonic; None while open
    logged_s: float | None = None  # what the `done in S s` line said
    outcome: str = "open"  # done | failed | unfinished


def parse_stages(lines: Iterable[tuple[float, str]], end: float) -> list[StageSpan]:
    """Stage spans from timestamped stderr lines; a stage still open at `end` (the command
    was killed or died) ends there as `unfinished`. A stage may repeat (one span each)."""
    spans: list[StageSpan] = []
    open_: dict[str, StageSpan] = {}
    for t, line in lines:
        m = PROGRESS.match(line.strip())
        if not m:
            continue
        stage = m["stage"]
        if m["started"]:
            span = StageSpan(stage, t)
            open_[stage] = span
            spans.append(span)
            continue
        span = open_.pop(stage, None)
        if span is None:  # a done line without its start: the start came before we listened
            span = StageSpan(stage, t)
            spans.append(span)
        span.end = t
        span.logged_s = float(m["done"] or m["failed"])
        span.outcome = "done" if m["done"] else "failed"
    for span in open_.values():
        span.end, span.outcome = end, "unfinished"
    return spans


def peak_between(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Largest sample in [start, end]; a span shorter than the sampling interval that holds
    no sample gets the larger of the samples just before and just after it."""
    inside = [v for t, v in samples if start <= t <= end]
    if inside:
        return max(inside)
    before = [v for t, v in samples if t < start]
    after = [v for t, v in samples if t > end]
    near = ([before[-1]] if before else []) + ([after[0]] if after else [])
    return max(near) if near else None


def attribute(
    lines: list[tuple[float, str]],
    samples: list[tuple[float, float]],
    t0: float,
    end: float,
) -> dict[str, Any]:
    """Per stage: seconds (the logged figure when there is one, else the measured span),
    measured span, peak RSS (MiB; samples in KiB) and outcome; plus the peak outside every
    stage (start-up, imports, Prefect) and the marks (training windows, LightGBM rounds).

    `samples` are (monotonic, KiB); `t0`/`end` the command's start and end (monotonic)."""
    spans = parse_stages(lines, end)
    stages: dict[str, dict[str, Any]] = {}
    for span in spans:
        assert span.end is not None
        measured = span.end - span.start
        peak = peak_between(samples, span.start, span.end)
        row = stages.setdefault(
            span.stage,
            {"seconds": 0.0, "span_s": 0.0, "peak_mib": None, "outcome": "done", "count": 0},
        )
        row["count"] += 1
        row["seconds"] += span.logged_s if span.logged_s is not None else measured
        row["span_s"] += measured
        row["start_s"] = row.get("start_s", span.start - t0)
        if peak is not None:
            row["peak_mib"] = max(row["peak_mib"] or 0.0, peak / MIB)
        if span.outcome != "done":
            row["outcome"] = span.outcome
    for row in stages.values():
        row["seconds"] = round(row["seconds"], 3)
        row["span_s"] = round(row["span_s"], 3)
        if row["peak_mib"] is not None:
            row["peak_mib"] = round(row["peak_mib"], 1)
    covered = [(s.start, s.end) for s in spans]
    outside = [v for t, v in samples if not any(a <= t <= b for a, b in covered)]
    marks = []
    for t, line in lines:
        m = MARK.match(line.strip())
        if m:
            marks.append({"t_s": round(t - t0, 2), "logger": m["logger"], "msg": m["msg"][:160]})
    first = min((s.start for s in spans), default=None)
    return {
        "stages": stages,
        "before_first_stage_s": round(first - t0, 2) if first is not None else None,
        "outside_peak_mib": round(max(outside) / MIB, 1) if outside else None,
        "stage_seconds_total": round(sum(s.logged_s or 0.0 for s in spans), 3),
        "training_windows": sum("training window" in m["msg"] for m in marks),
        "lightgbm_round_lines": sum(m["msg"].startswith("lightgbm round") for m in marks),
        "marks": marks,
    }


def growth_exponent(events: list[float], values: list[float | None]) -> float | None:
    """Slope of log(value) on log(events) by least squares; None with fewer than two sizes
    or a missing / non-positive value (a log needs positive numbers)."""
    pairs = [(e, v) for e, v in zip(events, values, strict=True) if v is not None]
    if len(pairs) < 2 or len(pairs) != len(values) or any(v <= 0 for _, v in pairs):
        return None
    x = np.log([e for e, _ in pairs])
    if np.ptp(x) == 0:
        return None
    slope, _ = np.polyfit(x, np.log([v for _, v in pairs]), 1)
    return float(slope)


def parse_size(text: str) -> int:
    """`0.3M`, `1M`, `500k`, `2000000` -> events."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r}: use e.g. 0.3M, 500k or 300000")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[m[2].lower()]
    return round(float(m[1]) * scale)


# --- process tree sampling -----------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc/*/stat (works without CONFIG_PROC_CHILDREN)."""
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def _children(pid: int, kids_map: dict[int, list[int]] | None) -> list[int]:
    found: list[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/children") as f:
                found.extend(int(c) for c in f.read().split())
        return found
    except OSError:
        return (kids_map or {}).get(pid, [])


def tree_pids(root: int) -> list[int]:
    """root and all its descendants."""
    use_children_files = os.path.exists(f"/proc/{root}/task/{root}/children")
    kids_map = None if use_children_files else _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(_children(pid, kids_map))
    return out


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """RSS of a process tree every `interval` s: (monotonic, KiB) samples and a kill flag."""

    def __init__(self, pid: int, interval: float, max_kib: float | None) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.max_kib = pid, interval, max_kib
        self.samples: list[tuple[float, float]] = []
        self.max_procs = 0
        self.over = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = tree_pids(self.pid)
            total = sum(rss_kib(p) for p in pids)
            if total:
                self.samples.append((time.monotonic(), float(total)))
                self.max_procs = max(self.max_procs, len(pids))
            if self.max_kib is not None and total > self.max_kib:
                self.over.set()
            self.stop.wait(self.interval)


def _reader(stream: Any, sink: list[tuple[float, str]], log: Any) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        sink.append((time.monotonic(), line))
        log.write(line + "\n")
        log.flush()


def run_measured(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    timeout_s: float,
    max_rss_gib: float | None,
    sample_s: float,
) -> dict[str, Any]:
    """Run one command, sampling its tree's RSS and reading its stages as they come."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    err_lines: list[tuple[float, str]] = []
    out_lines: list[tuple[float, str]] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a kill reaches Prefect's server too
    )
    max_kib = max_rss_gib * 2**20 if max_rss_gib else None
    sampler = Sampler(proc.pid, sample_s, max_kib)
    sampler.start()
    with open(log_path, "w") as log, open(log_path.with_suffix(".stdout"), "w") as outlog:
        readers = [
            threading.Thread(target=_reader, args=(proc.stderr, err_lines, log), daemon=True),
            threading.Thread(target=_reader, args=(proc.stdout, out_lines, outlog), daemon=True),
        ]
        for r in readers:
            r.start()
        outcome, hwm_kib = "exited", 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                hwm_kib = usage.ru_maxrss
                break
            if time.monotonic() - t0 > timeout_s:
                outcome = "timeout"
            elif sampler.over.is_set():
                outcome = "killed: rss"
            if outcome != "exited":
                _kill_group(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                hwm_kib = usage.ru_maxrss
                break
            time.sleep(0.05)
        end = time.monotonic()
        sampler.stop.set()
        sampler.join()
        _kill_group(proc.pid, signal.SIGKILL)  # anything of ours left behind (none expected)
        for r in readers:
            r.join(timeout=5)
    samples = list(sampler.samples)
    result = attribute(err_lines, samples, t0, end)
    result.update(
        {
            "argv": argv,
            "outcome": outcome,
            "exit_code": proc.returncode,
            "wall_s": round(end - t0, 2),
            "peak_rss_mib": round(max((v for _, v in samples), default=0.0) / MIB, 1),
            "main_process_hwm_mib": round(hwm_kib / MIB, 1),
            "max_processes": sampler.max_procs,
            "rss_samples": len(samples),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "stderr_tail": [line for _, line in err_lines[-15:]],
            "stdout_tail": [line for _, line in out_lines[-12:]],
            "log": str(log_path),
        }
    )
    return result


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --- shops: config per size, generation (cached), landing ----------------------------------


def shop_config(customers: int, days: int, items_per_sqrt: float) -> Any:
    from tasks.synth.shop import SynthShopConfig

    items = max(250, round(items_per_sqrt * math.sqrt(customers)))
    return SynthShopConfig(
        n_customers=customers, n_items=items, n_categories=N_CATEGORIES, days=days, seed=SEED
    )


def _config_key(config: Any, blocks: int) -> str:
    return (
        f"shop-c{config.n_customers}-i{config.n_items}-k{config.n_categories}-d{config.days}"
        f"-{config.start:%Y%m%d}-s{config.seed}-b{blocks}"
    )


def _block_shop(config: Any, block: int, total_customers: int, offset: int) -> Any:
    """Customers [offset, offset + n) of a shop drawn in blocks: the one catalog of
    config.seed, and this block's customers, sessions and events from the seed stream
    [seed, block], with ids renumbered so that blocks never share a customer, session or
    order. Mirrors tasks.synth.shop.generate_shop."""
    import polars as pl

    from tasks.constants import ORDER_ID, SESSION_ID, USER_ID
    from tasks.synth import shop as synth

    catalog = synth._build_catalog(config, np.random.default_rng(config.seed))
    rng = np.random.default_rng([config.seed, block])
    customers = synth._build_customers(config, rng)
    staple_orders = synth._staple_orders(config, customers, catalog, rng)
    sessions = synth._sessions(config, customers, staple_orders, rng)
    views = synth._views(sessions, staple_orders, customers, catalog, rng)
    carts, purchases = synth._carts_and_purchases(views, rng)
    timed = synth._timed_sessions(sessions, views, carts, purchases, config, rng)
    events = synth._events(views, carts, purchases, timed, catalog, config, rng)
    width = synth._width(total_customers, 5)
    tag = f"b{block:03d}-"
    events = events.with_columns(
        (
            pl.lit("u")
            + (pl.col(USER_ID).str.slice(1).cast(pl.Int64) + offset).cast(pl.Utf8).str.zfill(width)
        ).alias(USER_ID),
        (pl.lit("s" + tag) + pl.col(SESSION_ID).str.slice(1)).alias(SESSION_ID),
        (pl.lit("o" + tag) + pl.col(ORDER_ID).str.slice(1)).alias(ORDER_ID),
    )
    return synth.SyntheticShop(events=events, catalog=catalog.frame, config=config)


def generate_landing(config: Any, blocks: int, landing: Path) -> dict[str, Any]:
    """Write the shop's landing folder (catalog.csv, events/DAY.csv) and meta.json last; in
    blocks, each block's day files are appended to the folder's (headers once)."""
    from tasks.synth.shop import generate_shop, write_landing

    started = time.perf_counter()
    tmp = landing.with_name(landing.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if blocks == 1:
        shop = generate_shop(config)
        report = write_landing(shop, tmp)
        events, rows = shop.events.height, report.rows_written
        del shop
    else:
        sizes = [len(a) for a in np.array_split(np.arange(config.n_customers), blocks)]
        events = rows = offset = 0
        for block, n in enumerate(sizes):
            block_config = dataclasses.replace(
                config,
                n_customers=n,
                malformed_rows_per_day=config.malformed_rows_per_day / blocks,
            )
            shop = _block_shop(block_config, block, config.n_customers, offset)
            part = tmp / "blocks" / f"{block:03d}"
            report = write_landing(shop, part)
            events, rows, offset = (
                events + shop.events.height,
                rows + report.rows_written,
                offset + n,
            )
            del shop
            if block == 0:
                shutil.copy(report.catalog_path, tmp / "catalog.csv")
            (tmp / "events").mkdir(parents=True, exist_ok=True)
            for path in report.files:
                _append_csv(path, tmp / "events" / path.name, header=block == 0)
            shutil.rmtree(part)
        shutil.rmtree(tmp / "blocks")
    meta = {
        "config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
        "blocks": blocks,
        "events": events,
        "rows_written": rows,
        "generate_s": round(time.perf_counter() - started, 1),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(landing, ignore_errors=True)
    os.replace(tmp, landing)
    return meta


def _append_csv(source: Path, target: Path, header: bool) -> None:
    with open(source, "rb") as src, open(target, "ab") as dst:
        first = src.readline()
        if header:
            dst.write(first)
        shutil.copyfileobj(src, dst)


def _generate_child(config: Any, blocks: int, landing: str) -> None:
    generate_landing(config, blocks, Path(landing))


def ensure_landing(config: Any, blocks: int, work: Path) -> tuple[Path, dict[str, Any]]:
    """The cached landing folder of this config, generated in a child process when absent
    (so the benchmark's own process never holds the shop)."""
    landing = work / "shops" / _config_key(config, blocks)
    meta_path = landing / "meta.json"
    if not meta_path.is_file():
        print(f"  generating {landing.name} ...", flush=True)
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=_generate_child, args=(config, blocks, str(landing)))
        child.start()
        child.join()
        if child.exitcode != 0 or not meta_path.is_file():
            raise SystemExit(f"generating {landing} failed (exit {child.exitcode})")
    meta = json.loads(meta_path.read_text())
    print(
        f"  landing {landing} ({meta['events']:,} events, {meta['rows_written']:,} rows, "
        f"generated in {meta['generate_s']} s)",
        flush=True,
    )
    return landing, meta


def events_per_customer_day(work: Path, days: int, items_per_sqrt: float) -> float:
    """Measured once on a PROBE_CUSTOMERS shop (cached in WORK/ratio-*.json)."""
    cache = work / f"ratio-c{PROBE_CUSTOMERS}-d{days}-i{items_per_sqrt:g}-s{SEED}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["events_per_customer_day"]
    from tasks.synth.shop import generate_shop

    config = shop_config(PROBE_CUSTOMERS, days, items_per_sqrt)
    ratio = generate_shop(config).events.height / (config.n_customers * config.days)
    work.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"events_per_customer_day": ratio}))
    return ratio


# --- the benchmark -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    from machine import describe

    info: dict[str, Any] = dict(describe())
    info["platform"] = platform.platform()
    info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def base_env(home: Path, prefect_home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTREC_")}
    env.update(
        {
            "NIGHTREC_HOME": str(home),
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def warm_prefect(prefect_home: Path, env: dict[str, str]) -> float | None:
    """Create Prefect's database under PREFECT_HOME before anything is timed, so the first
    size does not pay for the migrations."""
    prefect = Path(sys.executable).parent / "prefect"
    if not prefect.exists():
        return None
    started = time.perf_counter()
    subprocess.run(
        [str(prefect), "server", "database", "upgrade", "-y"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
        check=False,
    )
    return round(time.perf_counter() - started, 1)


def manifest_of(home: Path, day: dt.date) -> dict[str, Any] | None:
    path = home / "recommendations" / f"run_date={day.isoformat()}" / "_manifest.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    keys = ("rows", "users", "status", "model_version", "retrained", "degraded")
    return {k: m.get(k) for k in keys if k in m}


def run_size(
    label: str, target: int, args: argparse.Namespace, ratio: float, extra_env: dict[str, str]
) -> dict[str, Any]:
    customers = max(50, round(target / (ratio * args.days)))
    config = shop_config(customers, args.days, args.items_per_sqrt_customer)
    blocks = max(1, math.ceil(target / args.block_events))
    print(
        f"size {label}: {customers:,} customers, {config.n_items:,} items, {args.days} days"
        f" ({blocks} block(s))",
        flush=True,
    )
    landing, meta = ensure_landing(config, blocks, args.work)
    last = config.start + dt.timedelta(days=config.days - 1)
    d0, d1, d2 = last - dt.timedelta(days=2), last - dt.timedelta(days=1), last
    reused = reused_home(args.work, label) if args.reuse_commands is not None else None
    home = reused or args.work / "homes" / f"{label}-{dt.datetime.now():%Y%m%dT%H%M%S}"
    if reused is None:
        shutil.rmtree(home, ignore_errors=True)
    env = base_env(home, args.prefect_home, extra_env)
    cli = [sys.executable, "-m", "flows.cli"]
    src = ["--source", "canonical"]
    commands = {
        "ingest": [*cli, "ingest", *src, "--path", str(landing), "--end", d0.isoformat()],
        "retrain": [
            *cli,
            "run",
            "--date",
            d1.isoformat(),
            "--retrain",
            "--landing",
            str(landing),
            *src,
        ],
        "score": [
            *cli,
            "run",
            "--date",
            d2.isoformat(),
            "--no-retrain",
            "--landing",
            str(landing),
            *src,
        ],
    }
    result: dict[str, Any] = {
        "label": label,
        "target_events": target,
        "events": meta["events"],
        "landing_rows": meta["rows_written"],
        "config": {
            "customers": config.n_customers,
            "items": config.n_items,
            "categories": config.n_categories,
            "days": config.days,
            "start": config.start.isoformat(),
            "seed": config.seed,
            "blocks": blocks,
        },
        "landing": str(landing),
        "home": str(home),
        "dates": {"ingest_end": d0.isoformat(), "retrain": d1.isoformat(), "score": d2.isoformat()},
        "runs": {},
    }
    for name, argv in commands.items():
        if reused is not None and name not in args.reuse_commands:
            result["runs"][name] = {"outcome": "skipped", "why": f"reused home {reused.name}"}
            print(f"  {name}: skipped (reused home {reused})", flush=True)
            continue
        previous = [
            r for r in result["runs"].values() if r["outcome"] != "exited" and reused is None
        ]
        if previous or (
            reused is None and name != "ingest" and result["runs"]["ingest"]["exit_code"] != 0
        ):
            result["runs"][name] = {"outcome": "skipped", "why": "an earlier command failed"}
            print(f"  {name}: skipped (an earlier command failed)", flush=True)
            continue
        print(f"  {name}: {shlex.join(argv[1:])}", flush=True)
        run = run_measured(
            argv,
            env,
            args.work / "logs" / f"{home.name}-{name}.log",
            args.timeout_s,
            args.max_rss_gib,
            args.sample_s,
        )
        day = {"retrain": d1, "score": d2}.get(name)
        run["manifest"] = manifest_of(home, day) if day else None
        result["runs"][name] = run
        print("  " + summary_line(name, run), flush=True)
    if not args.keep_homes and reused is None:
        shutil.rmtree(home, ignore_errors=True)
    return result


def reused_home(work: Path, label: str) -> Path:
    """The newest home kept (--keep-homes) for `label` whose retraining day registered a model."""
    homes = sorted(
        (h for h in (work / "homes").glob(f"{label}-*") if any((h / "models").glob("*/meta.json"))),
        key=lambda h: h.name,
    )
    if not homes:
        raise SystemExit(f"--reuse-homes: no kept home with a model for {label} under {work}/homes")
    return homes[-1]


def summary_line(name: str, run: dict[str, Any]) -> str:
    if run["outcome"] == "skipped":
        return f"{name}: skipped"
    stages = ", ".join(
        f"{s} {v['seconds']:.1f}s/{v['peak_mib'] or 0:.0f}MiB" for s, v in run["stages"].items()
    )
    man = run.get("manifest") or {}
    return (
        f"{name}: {run['outcome']} exit {run['exit_code']} in {run['wall_s']:.1f} s, peak "
        f"{run['peak_rss_mib']:.0f} MiB"
        + (
            f", {man.get('rows')} rows / {man.get('users')} users {man.get('status')}"
            if man
            else ""
        )
        + (f" [{stages}]" if stages else "")
        + f" (load {run['load_before'][0]} -> {run['load_after'][0]})"
    )


def fits(sizes: list[dict[str, Any]], min_events: int = 0) -> dict[str, Any]:
    """Growth exponents per command (wall, peak) and per stage (seconds, peak), over the sizes
    of at least `min_events` whose command exited (0 or 3: a degraded run ran every stage)."""
    out: dict[str, Any] = {}
    for name in ("ingest", *DAY_KINDS):
        ok = [
            s
            for s in sizes
            if s["events"] >= min_events
            and s["runs"].get(name, {}).get("outcome") == "exited"
            and s["runs"][name]["exit_code"] in (0, 3)
        ]
        events = [float(s["events"]) for s in ok]
        runs = [s["runs"][name] for s in ok]
        entry: dict[str, Any] = {
            "sizes": [s["label"] for s in ok],
            "wall_s": growth_exponent(events, [r["wall_s"] for r in runs]),
            "peak_rss_mib": growth_exponent(events, [r["peak_rss_mib"] for r in runs]),
            "stages": {},
        }
        names = [st for st in STAGES if any(st in r["stages"] for r in runs)]
        names += sorted({st for r in runs for st in r["stages"]} - set(names))
        for st in names:
            seconds = [r["stages"].get(st, {}).get("span_s") for r in runs]
            peaks = [r["stages"].get(st, {}).get("peak_mib") for r in runs]
            entry["stages"][st] = {
                "seconds": growth_exponent(events, seconds),
                "peak_mib": growth_exponent(events, peaks),
            }
        out[name] = entry
    return out


def _n(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# {result['title']}", ""]
    if result.get("note"):
        lines += [f"**{result['note']}**", ""]
    lines += [
        f"Measured {result['measured_at']} (UTC) on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_gib']} GiB), {m['platform']}, Python {m['python']}; load average "
        f"(1/5/15 min) at start {m['load_average']}, at the end {result['load_average_end']}.",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Shops: tasks/synth/shop.py, {result['shape']}. Each size: fresh NIGHTREC_HOME; "
        "`ingest --end D0` (all days but the last two), then a retraining day D1 "
        "(`run --retrain`) and a scoring-only day D2 (`run --no-retrain`), each a "
        "subprocess. Peak RSS: the command's process tree (Prefect's ephemeral server "
        f"included), sampled every {result['sample_s']} s; a stage's peak is the largest sample "
        "taken while it ran. Stage seconds: as logged by `nightrec.progress`.",
        "",
        "| size | events | customers | items | command | outcome | wall s | peak MiB | "
        + " | ".join(STAGES)
        + " | before 1st stage s | peak outside stages MiB | rows / users / status |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | "
        + " | ".join("---" for _ in STAGES)
        + " | ---: | ---: | --- |",
    ]
    for s in result["sizes"]:
        for name, run in s["runs"].items():
            if run["outcome"] == "skipped":
                cells = ["skipped", "", ""] + ["" for _ in STAGES] + ["", "", run.get("why", "")]
            else:
                outcome = run["outcome"] if run["outcome"] != "exited" else "ok"
                outcome = f"{outcome} (exit {run['exit_code']})"
                stage_cells = []
                for st in STAGES:
                    v = run["stages"].get(st)
                    if v is None:
                        stage_cells.append("")
                        continue
                    cell = f"{v['seconds']:.1f} s / {v['peak_mib'] or 0:.0f} MiB"
                    if v["outcome"] != "done":
                        cell += f" ({v['outcome']})"
                    stage_cells.append(cell)
                man = run.get("manifest") or {}
                manc = f"{man.get('rows', '')} / {man.get('users', '')} / {man.get('status', '')}"
                cells = [
                    outcome,
                    f"{run['wall_s']:.1f}",
                    f"{run['peak_rss_mib']:.0f}",
                    *stage_cells,
                    _n(run.get("before_first_stage_s"), 1) if run["stages"] else "",
                    _n(run.get("outside_peak_mib"), 0),
                    manc if man else "",
                ]
            c = s["config"]
            lines.append(
                f"| {s['label']} | {s['events']:,} | {c['customers']:,} | {c['items']:,} | "
                f"{name} | " + " | ".join(cells) + " |"
            )
    if result.get("skipped_sizes"):
        lines += [
            "",
            f"Not run: {', '.join(result['skipped_sizes'])} (a smaller size was killed; "
            "`--keep-going` runs them anyway).",
        ]
    lines += [
        "",
        "Load average (1 min) before -> after each command: "
        + "; ".join(
            f"{s['label']} {name} {r['load_before'][0]} -> {r['load_after'][0]}"
            for s in result["sizes"]
            for name, r in s["runs"].items()
            if r["outcome"] != "skipped"
        ),
        "",
        "## Growth exponents (log-log least squares against events; 1.0 = linear)",
        "",
        (
            f"Over the sizes of at least {result['fit_min_events']:,} events that ran. "
            if result.get("fit_min_events")
            else "Over every size that ran. "
        )
        + "Fixed costs (imports, Prefect's start and server: see `before 1st stage` and `peak "
        "outside stages`) flatten the exponents of the smallest sizes; "
        "`--fit-min 1M --from-json OUT.json` refits.",
        "",
        "| command | sizes | wall s | peak MiB | "
        + " | ".join(f"{st} s / MiB" for st in STAGES)
        + " |",
        "| --- | --- | ---: | ---: | " + " | ".join("---" for _ in STAGES) + " |",
    ]
    for name, f in result["exponents"].items():
        cells = []
        for st in STAGES:
            v = f["stages"].get(st)
            cells.append("" if v is None else f"{_x(v['seconds'])} / {_x(v['peak_mib'])}")
        lines.append(
            f"| {name} | {', '.join(f['sizes'])} | {_x(f['wall_s'])} | {_x(f['peak_rss_mib'])} | "
            + " | ".join(cells)
            + " |"
        )
    timeline = [
        (s["label"], name, run)
        for s in result["sizes"]
        for name, run in s["runs"].items()
        if run.get("marks")
    ]
    if timeline:
        lines += [
            "",
            "## Inside the runs: training windows, LightGBM rounds, the gate "
            "(seconds since the command started)",
            "",
        ]
        for label, name, run in timeline:
            stages = run["stages"]
            marks = "; ".join(f"+{m['t_s']:.0f} s {m['msg']}" for m in run["marks"])
            starts = ", ".join(
                f"{st} +{v['start_s']:.0f} s" for st, v in stages.items() if "start_s" in v
            )
            lines.append(f"- {label} {name}: stages start {starts}. {marks}")
    if result.get("reading"):
        lines += ["", "## Reading (by hand)", "", *result["reading"]]
    lines += [
        "",
        "Stage exponents use the measured span of each stage (its `started` and `done` lines "
        "as they arrived), so that sub-second stages are not rounded to 0.0 s. n/a: fewer than "
        "two sizes ran, or a value was missing.",
        "",
    ]
    return "\n".join(lines)


def print_table(result: dict[str, Any]) -> None:
    print()
    print(f"{'size':>6} {'events':>11} {'command':8} {'outcome':14} {'wall s':>8} {'peak MiB':>9}")
    for s in result["sizes"]:
        for name, run in s["runs"].items():
            if run["outcome"] == "skipped":
                print(f"{s['label']:>6} {s['events']:>11,} {name:8} skipped")
                continue
            print(
                f"{s['label']:>6} {s['events']:>11,} {name:8} "
                f"{run['outcome'] + ' ' + str(run['exit_code']):14} {run['wall_s']:>8.1f} "
                f"{run['peak_rss_mib']:>9.0f}"
            )
            for st, v in run["stages"].items():
                print(f"{'':>28}{st:14} {v['seconds']:>8.1f} {v['peak_mib'] or 0:>9.0f}")
    print("\ngrowth exponents (time, peak RSS) against events:")
    for name, f in result["exponents"].items():
        stages = ", ".join(
            f"{st} {_x(v['seconds'])}/{_x(v['peak_mib'])}" for st, v in f["stages"].items()
        )
        print(
            f"  {name:8} over {', '.join(f['sizes']) or '-'}: wall {_x(f['wall_s'])}, "
            f"peak {_x(f['peak_rss_mib'])}" + (f"; {stages}" if stages else "")
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="e.g. 0.3M 1M")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="shops, homes, logs")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale", help="writes OUT.md/.json")
    parser.add_argument("--timeout-s", type=float, default=3 * 3600, help="per command")
    parser.add_argument("--max-rss-gib", type=float, default=None, help="kill a command above")
    parser.add_argument("--sample-s", type=float, default=0.2, help="RSS sampling interval")
    parser.add_argument("--days", type=int, default=120, help="days of history per shop")
    parser.add_argument("--items-per-sqrt-customer", type=float, default=30.0)
    parser.add_argument("--block-events", type=parse_size, default=parse_size("4M"))
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a variable for every command, e.g. NIGHTREC_RANKER__NUM_THREADS=2 (NIGHTREC_* "
        "variables of this shell are not passed on: the commands see only these)",
    )
    parser.add_argument("--keep-homes", action="store_true", help="keep each NIGHTREC_HOME")
    parser.add_argument(
        "--reuse-homes",
        nargs="*",
        choices=("retrain", "score"),
        default=None,
        dest="reuse_commands",
        help="run these days again (default: the scoring day) on each size's newest kept home "
        "with a model, after a code change; the shop and its ingest stay as they were",
    )
    parser.add_argument("--keep-going", action="store_true", help="run larger sizes after a kill")
    parser.add_argument("--note", default="", help="a line printed at the top of OUT.md")
    parser.add_argument("--title", default="Scale benchmark: a nightly run as the shop grows")
    parser.add_argument(
        "--fit-min",
        type=parse_size,
        default=0,
        help="fit the exponents over sizes of at least this many events (fixed start-up "
        "costs flatten the smallest sizes)",
    )
    parser.add_argument(
        "--from-json", type=Path, default=None, help="only re-render OUT.md from this JSON"
    )
    args = parser.parse_args(argv)
    if args.reuse_commands == []:
        args.reuse_commands = ["score"]
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        result["fit_min_events"] = args.fit_min
        result["exponents"] = fits(result["sizes"], args.fit_min)
        args.out.with_suffix(".md").write_text(render(result))
        print_table(result)
        return
    extra_env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env {item!r}: use KEY=VALUE")
        extra_env[key] = value
    sizes = sorted(((s, parse_size(s)) for s in args.sizes), key=lambda p: p[1])
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    args.prefect_home = args.work / "prefect-home"
    info = machine()
    command = "PYTHONPATH=. " + shlex.join(
        [
            os.path.relpath(sys.executable, ROOT)
            if sys.executable.startswith(str(ROOT))
            else sys.executable,
            "benchmarks/scale.py",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    print(f"machine: {info}")
    print(f"work: {args.work}")
    warm_s = warm_prefect(args.prefect_home, base_env(args.work, args.prefect_home, extra_env))
    print(f"prefect database ready under {args.prefect_home} ({warm_s} s)")
    ratio = events_per_customer_day(args.work, args.days, args.items_per_sqrt_customer)
    print(f"events per customer per day (measured on {PROBE_CUSTOMERS} customers): {ratio:.4f}")
    results: list[dict[str, Any]] = []
    killed = None
    for label, target in sizes:
        if killed and not args.keep_going:
            print(f"size {label}: skipped (size {killed} was killed)")
            continue
        size = run_size(label, target, args, ratio, extra_env)
        results.append(size)
        if any(r["outcome"] in ("timeout", "killed: rss") for r in size["runs"].values()):
            killed = label
    result = {
        "benchmark": "scale",
        "title": args.title,
        "note": args.note,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": info,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "sample_s": args.sample_s,
        "timeout_s": args.timeout_s,
        "max_rss_gib": args.max_rss_gib,
        "env": extra_env,
        "events_per_customer_day": ratio,
        "prefect_warmup_s": warm_s,
        "shape": (
            f"{args.days} days from 2026-01-05, {N_CATEGORIES} categories, seed {SEED}, items = "
            f"{args.items_per_sqrt_customer:g} x sqrt(customers) (at least 250), customers = "
            f"events / ({ratio:.3f} events per customer-day x {args.days} days), "
            f"blocks of at most {args.block_events:,} events"
        ),
        "sizes": results,
        "skipped_sizes": [
            label for label, _ in sizes if label not in {r["label"] for r in results}
        ],
    }
    result["fit_min_events"] = args.fit_min
    result["exponents"] = fits(results, args.fit_min)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(result))
    print_table(result)
    print(f"\nwrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
