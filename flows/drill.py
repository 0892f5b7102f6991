"""`nightrec drill`: scripted failure scenarios, each in a scratch home on a tiny synthetic
shop, each ending with what was expected, what was observed and how many rows were lost.

Rows lost = rows of landing files not accounted for as loaded, quarantined or filtered, plus
rows whose count in `ingestions` disagrees with the `events` table, plus known customers the
published output misses. Every scenario must end with 0.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tasks.errors import DegradedRun
from tasks.ingest.landing import IngestError, find_day_files, read_raw
from tasks.ingest.load import BadShareError, ingest_catalog, ingest_landing
from tasks.publish.writer import is_complete, partition_dir, read_manifest
from tasks.store import StoreError, connect
from tasks.synth.shop import generate_shop, write_landing
from tasks.synth.tiny import TINY_MAX_BAD_SHARE, TINY_PROTOCOL_ENV, TINY_SHOP
from tasks.timeutil import run_as_of

DRILL_SHOP = TINY_SHOP
RUN_DATE = DRILL_SHOP.start + dt.timedelta(days=DRILL_SHOP.days - 2)
PREVIOUS = RUN_DATE - dt.timedelta(days=1)
# A short protocol so that a scenario takes seconds (the same one the flow tests use).
# The scenarios damage a LightGBM model file and read LightGBM's runs: the kind is pinned, so
# the drill is the same on every machine (ranker.kind=auto would depend on CUDA and speed).
DRILL_ENV = {
    **TINY_PROTOCOL_ENV,
    "NIGHTREC_MAX_BAD_SHARE": str(TINY_MAX_BAD_SHARE),
    "NIGHTREC_RANKER__KIND": "lightgbm",
}
MAX_BAD_SHARE = TINY_MAX_BAD_SHARE


@dataclass(frozen=True)
class DrillRow:
    scenario: str
    expected: str
    observed: str
    rows_lost: int
    passed: bool
    seconds: float

    def line(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        return f"{verdict} {self.scenario}: {self.observed} (rows lost {self.rows_lost})"

    def as_row(self) -> dict:
        return {
            "scenario": self.scenario,
            "expected": self.expected,
            "observed": self.observed,
            "rows lost": self.rows_lost,
            "result": "pass" if self.passed else "FAIL",
        }


@dataclass
class Scratch:
    """One scenario's home, landing folder and environment."""

    home: Path
    landing: Path
    env: dict[str, str]

    @property
    def db(self) -> Path:
        return self.home / "nightrec.duckdb"

    @property
    def recs(self) -> Path:
        return self.home / "recommendations"


@contextlib.contextmanager
def scoped_env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block only (settings are read from them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _scratch(root: Path, name: str) -> Scratch:
    home = root / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    landing = home / "landing"
    report = write_landing(generate_shop(DRILL_SHOP), landing)
    ingest_catalog(home / "nightrec.duckdb", report.catalog_path)
    env = {**DRILL_ENV, "NIGHTREC_HOME": str(home), "NIGHTREC_CONFIG": str(home / "none.yaml")}
    return Scratch(home, landing, env)


def _ingest(s: Scratch, end: dt.date, start: dt.date | None = None, **kw) -> list:
    return ingest_landing(
        s.db, "canonical", s.landing, max_bad_share=MAX_BAD_SHARE, start=start, end=end, **kw
    )


def _nightly(s: Scratch, day: dt.date, retrain: bool | None = None) -> dict:
    """The run's manifest; a degraded run (published, flow failed) gives its manifest too."""
    from flows.nightly import NightlyParams, nightly_flow

    params = NightlyParams(
        run_date=day,
        retrain=retrain,
        landing_dir=str(s.landing),
        source="canonical",
        home=str(s.home),
    )
    with scoped_env(s.env):
        try:
            return nightly_flow(params)
        except DegradedRun as exc:
            return exc.result


def _cli(s: Scratch, args: list[str], extra_env: dict[str, str] | None = None, **kw):
    env = {**os.environ, **s.env, **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        **kw,
    )


def rows_lost(s: Scratch, published: list[dt.date] = ()) -> int:
    """Landing rows not accounted for, store counts that disagree, customers not published."""
    lost = 0
    with connect(s.db) as con:
        ingestions = con.execute(
            "select event_day, source_file, status, rows_in, rows_loaded, rows_quarantined, "
            "rows_filtered from ingestions"
        ).fetchall()
        loaded = dict(con.execute("select event_day, count(*) from events group by 1").fetchall())
        quarantined = dict(
            con.execute(
                "select event_day, count(*) from quarantine where replayed_at is null group by 1"
            ).fetchall()
        )
        users = {
            day: con.execute(
                "select count(distinct user_id) from events where ts < ?",
                [run_as_of(day)],
            ).fetchone()[0]
            for day in published
        }
    for day, file, status, rows_in, n_loaded, n_quarantined, n_filtered in ingestions:
        lost += abs(read_raw(Path(file)).height - rows_in)
        if status != "rejected":  # a rejected file keeps its rows: nothing of it is loaded
            lost += abs(rows_in - n_loaded - n_quarantined - n_filtered)
        lost += abs(loaded.get(day, 0) - n_loaded) + abs(quarantined.get(day, 0) - n_quarantined)
    for day in published:
        manifest = read_manifest(s.recs, day)
        lost += users[day] - (manifest["users"] if manifest else 0)
    return lost


Outcome = tuple[str, int, bool]  # observed, rows lost, passed


def corrupt_model(s: Scratch) -> Outcome:
    _ingest(s, PREVIOUS)
    first = _nightly(s, PREVIOUS)
    model_file = s.home / "models" / first["model_version"] / "model.txt"
    model_file.write_text("this is not a LightGBM model\n")
    manifest = _nightly(s, RUN_DATE, retrain=False)
    observed = (
        f"{first['model_version']} corrupted; published {manifest['rows']} rows with "
        f"{manifest['model_version']}, status {manifest['status']} "
        f"(fallback: {manifest['model_fallback']})"
    )
    ok = (
        manifest["model_version"] == "baseline-repurchase"
        and bool(manifest["model_fallback"])
        and manifest["status"] == "degraded"
    )
    return observed, rows_lost(s, [PREVIOUS, RUN_DATE]), ok and is_complete(s.recs, RUN_DATE)


def missing_landing_day(s: Scratch) -> Outcome:
    _ingest(s, PREVIOUS)
    (day_file,) = find_day_files(s.landing, RUN_DATE, RUN_DATE)
    day_file.unlink()
    manifest = _nightly(s, RUN_DATE)
    observed = (
        f"no file for {RUN_DATE}: ran on earlier days, published {manifest['rows']} rows, "
        f"watermark {manifest['input_watermark'][:10]}"
    )
    ok = manifest["ingested"] == [] and manifest["input_watermark"] < RUN_DATE.isoformat()
    return observed, rows_lost(s, [RUN_DATE]), ok


def half_written_output(s: Scratch) -> Outcome:
    from flows.backfill import BackfillParams, backfill_flow

    _ingest(s, PREVIOUS)
    _nightly(s, PREVIOUS)
    final = partition_dir(s.recs, PREVIOUS)
    part = final / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # a copy that died
    leftover = s.recs / f".staging-{final.name}-dead"
    leftover.mkdir()
    (leftover / "part-00000.parquet").write_bytes(b"PAR1 half")
    detected = not is_complete(s.recs, PREVIOUS)
    with scoped_env(s.env):
        rows = backfill_flow(
            BackfillParams(
                start=PREVIOUS, end=PREVIOUS, landing_dir=str(s.landing), source="canonical"
            )
        )
    readable = pl.read_parquet(part).height == read_manifest(s.recs, PREVIOUS)["rows"]
    observed = (
        f"truncated part {'detected' if detected else 'NOT detected'} by checksum; backfill "
        f"{rows[0]['state']}; staging leftover {'gone' if not leftover.exists() else 'kept'}"
    )
    ok = detected and readable and is_complete(s.recs, PREVIOUS) and not leftover.exists()
    return observed, rows_lost(s, [PREVIOUS]), ok


def crash_mid_ingest(s: Scratch) -> Outcome:
    _ingest(s, PREVIOUS)
    (day_file,) = find_day_files(s.landing, RUN_DATE, RUN_DATE)
    args = ["ingest", "--source", "canonical", "--path", str(day_file)]
    small_chunks = {"NIGHTREC_SAFETY__CHUNK_BYTES": "1024"}  # many chunks, many staged parts

    def day_rows() -> int:
        with connect(s.db) as con:
            return con.execute(
                "select count(*) from events where event_day = ?", [RUN_DATE]
            ).fetchone()[0]

    def staged_parts() -> int:
        return len(list((s.home / "staging").rglob("*.parquet")))

    # Killed while staging the chunks, then killed again inside the swap transaction.
    kills = []
    for point in ("mid_ingest", "mid_ingest_swap"):
        killed = _cli(s, args, {**small_chunks, "NIGHTREC_SAFETY__FAULT": point})
        kills.append((point, killed.returncode, day_rows(), staged_parts()))
    rerun = _cli(s, args, small_chunks)
    with connect(s.db) as con:
        status = con.execute(
            "select status, rows_in, rows_loaded from ingestions where event_day = ?", [RUN_DATE]
        ).fetchone()
    killed_text = "; ".join(
        f"killed (rc {rc}) at {point}: {partial} partial rows visible, {parts} staged parts left"
        for point, rc, partial, parts in kills
    )
    observed = (
        f"{killed_text}; rerun rc {rerun.returncode}: {status[0]} {status[1]} rows, "
        f"{staged_parts()} staged parts left"
    )
    ok = all(rc == -signal.SIGKILL and partial == 0 and parts for _, rc, partial, parts in kills)
    ok = ok and rerun.returncode == 0 and staged_parts() == 0
    return observed, rows_lost(s), ok and status[0] == "loaded" and day_rows() == status[2]


def store_locked(s: Scratch) -> Outcome:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True);"
            " time.sleep(120)",
            str(s.db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdout.readline()
        try:
            _ingest(s, PREVIOUS)
            message = "no error"
        except StoreError as exc:
            message = str(exc)
    finally:
        holder.kill()
        holder.wait()
    results = _ingest(s, PREVIOUS)
    observed = f"one line: '{message.splitlines()[0]}'; after release {len(results)} days loaded"
    ok = "locked by another process" in message and len(message.splitlines()) == 1
    return observed, rows_lost(s), ok and all(r.status == "loaded" for r in results)


def bad_rows_above_threshold(s: Scratch) -> Outcome:
    _ingest(s, PREVIOUS)
    (day_file,) = find_day_files(s.landing, RUN_DATE, RUN_DATE)
    good = day_file.read_text()
    lines = good.splitlines()
    event_type = lines[0].split(",").index("event_type")

    def break_row(line: str) -> str:
        fields = line.split(",")
        fields[event_type] = "teleport"
        return ",".join(fields)

    # Two rows in three get an event type the contract does not know.
    broken = [break_row(line) if i % 3 else line for i, line in enumerate(lines[1:])]
    day_file.write_text("\n".join([lines[0], *broken]) + "\n")
    try:
        _ingest(s, RUN_DATE, start=RUN_DATE)
        message = "accepted"
    except BadShareError as exc:
        message = str(exc).split(" (threshold")[0].split(": ", 1)[1]
    with connect(s.db) as con:
        loaded = con.execute(
            "select count(*) from events where event_day = ?", [RUN_DATE]
        ).fetchone()[0]
        kept = con.execute("select count(*) from events where event_day < ?", [RUN_DATE]).fetchone()
    lost_while_rejected = rows_lost(s)
    day_file.write_text(good)  # the fix: the shop re-sends the day
    (fixed,) = _ingest(s, RUN_DATE, start=RUN_DATE)
    observed = (
        f"rejected ({message}), {loaded} rows loaded, {kept[0]} earlier rows intact; "
        f"fixed file {fixed.status}"
    )
    ok = message != "accepted" and loaded == 0 and fixed.status == "loaded"
    return observed, lost_while_rejected + rows_lost(s), ok


SCENARIOS: dict[str, tuple[str, Callable[[Scratch], Outcome]]] = {
    "corrupt model file": (
        "baseline published, run marked degraded (exit 3); manifest names the fallback",
        corrupt_model,
    ),
    "missing landing day": (
        "run completes on earlier days; nothing ingested for the day",
        missing_landing_day,
    ),
    "half-written output": (
        "checksum flags the day; backfill reruns it; leftovers removed",
        half_written_output,
    ),
    "crash mid-ingest": (
        "kill -9 while staging or inside the swap leaves no partial day; rerun loads the "
        "whole day and removes the staged parts",
        crash_mid_ingest,
    ),
    "store locked by another writer": (
        "one clear error line; works once the lock is released",
        store_locked,
    ),
    "bad rows above threshold": (
        "file rejected whole, bad rows quarantined, store unchanged; fixed file loads",
        bad_rows_above_threshold,
    ),
}


def run_drill(
    root: Path | None = None,
    only: list[str] | None = None,
    on_done: Callable[[DrillRow], None] | None = None,
) -> list[DrillRow]:
    """Run the scenarios (all, or those named in `only`), each in `root/<scenario>`."""
    unknown = sorted(set(only or []) - set(SCENARIOS))
    if unknown:
        raise IngestError(f"unknown drill scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    temp = None
    if root is None:
        temp = tempfile.TemporaryDirectory(prefix="nightrec-drill-")
        root = Path(temp.name)
    rows = []
    try:
        for name, (expected, scenario) in SCENARIOS.items():
            if only and name not in only:
                continue
            started = time.perf_counter()
            scratch = _scratch(root, name.replace(" ", "_"))
            try:
                observed, lost, passed = scenario(scratch)
            except Exception as exc:  # a drill reports a broken scenario, it does not stop
                first = str(exc).splitlines()[0] if str(exc) else ""
                observed, lost, passed = f"crashed: {type(exc).__name__}: {first}", -1, False
            row = DrillRow(
                name,
                expected,
                observed,
                lost,
                passed and lost == 0,
                round(time.perf_counter() - started, 1),
            )
            rows.append(row)
            if on_done is not None:
                on_done(row)
    finally:
        if temp is not None:
            temp.cleanup()
    return rows


def to_markdown(rows: list[DrillRow], title: str = "") -> str:
    header = f"{title}\n\n" if title else ""
    header += "| scenario | expected | observed | rows lost | result | seconds |\n"
    header += "| --- | --- | --- | --- | --- | --- |\n"
    body = "".join(
        f"| {r.scenario} | {r.expected} | {r.observed} | {r.rows_lost} | "
        f"{'pass' if r.passed else 'FAIL'} | {r.seconds} |\n"
        for r in rows
    )
    return header + body


def as_json(rows: list[DrillRow]) -> str:
    return json.dumps([r.__dict__ for r in rows], indent=2)
