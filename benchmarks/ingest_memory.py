"""Benchmark: peak memory of ingesting one large landing file, streamed in chunks.

Generates canonical day files of growing size in a temp folder, then ingests each in a fresh
process (`ingest_file`, the same path `nightrec ingest` takes) and reads that process's peak
RSS from the kernel (wait4). Modes per file:

- `staged` (this tree): chunks validated and staged as Parquet parts, then one swap
  transaction (insert-select from the parts).
- `before` (`--before-ref REF`): the ingestion code of git revision REF (exported with
  `git archive` into the scratch folder), e.g. the commit before staging, where every chunk
  was inserted inside the day's single transaction.
- `whole file` (`--whole-file-max-mib`): one chunk as large as the file, DuckDB uncapped.

The child also reads its high-water mark (VmHWM) when the swap transaction starts, so the
peak of the chunk phase and of the swap are told apart. Prints and records
benchmarks/results/ingest_memory.{json,md} (or `--results-name`).

    .venv/bin/python benchmarks/ingest_memory.py [--sizes-mib 32 128 512 2048]
        [--chunk-mib 8] [--memory-mib 256] [--before-ref REV]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import polars as pl
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DAY = dt.date(2026, 1, 5)
BYTES_PER_ROW = 62  # about, for the columns below
COMMAND = ".venv/bin/python benchmarks/ingest_memory.py"

CHILD = """
import sys, time
from pathlib import Path

def hwm_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")

import tasks.ingest.load as load
from tasks.store import connect
path, db, chunk = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
limit = int(sys.argv[4]) if sys.argv[4] != "None" else None
marks = {"swap_start_hwm": float("nan"), "swap_s": float("nan")}
if hasattr(load, "_swap_day"):
    swap = load._swap_day
    def timed_swap(*args, **kwargs):
        marks["swap_start_hwm"] = hwm_mib()
        started = time.perf_counter()
        try:
            return swap(*args, **kwargs)
        finally:
            marks["swap_s"] = time.perf_counter() - started
    load._swap_day = timed_swap
imported = hwm_mib()
started = time.perf_counter()
with connect(db, memory_limit_mib=limit) as con:
    r = load.ingest_file(con, "canonical", path, max_bad_share=0.05, chunk_bytes=chunk)
seconds = time.perf_counter() - started
print("RESULT", r.rows_in, r.rows_loaded, r.rows_quarantined, r.rows_filtered, seconds,
      imported, marks["swap_start_hwm"], marks["swap_s"])
"""


def write_day(path: Path, rows: int, seed: int = 0) -> None:
    """A canonical day file of `rows` events, written in slices to keep this process small."""
    rng = np.random.default_rng(seed)
    start = dt.datetime.combine(DAY, dt.time())
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as out:
        written = 0
        while written < rows:
            n = min(1_000_000, rows - written)
            frame = pl.DataFrame(
                {
                    "user_id": [f"u{i}" for i in rng.integers(0, 50_000, n)],
                    "item_id": [f"i{i}" for i in rng.integers(0, 5_000, n)],
                    "event_type": rng.choice(["view", "cart", "purchase"], n),
                    "ts": pl.Series(
                        [start + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 86_399, n)]
                    ).dt.strftime("%Y-%m-%d %H:%M:%S"),
                    "quantity": rng.integers(1, 5, n),
                    "price": np.round(rng.uniform(0.5, 50, n), 2),
                    "order_id": [None] * n,
                    "session_id": [f"s{i}" for i in rng.integers(0, 10**6, n)],
                }
            )
            out.write(frame.write_csv(include_header=written == 0).encode())
            written += n


def export_revision(ref: str, scratch: Path) -> tuple[Path, str]:
    """The ingestion code (tasks/, sql/, contracts) of git revision `ref`, under `scratch`."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    target = scratch / f"code-{sha[:10]}"
    target.mkdir()
    folders = ["tasks", "sql", "data_contracts"]
    archive = subprocess.run(
        ["git", "archive", sha, *folders], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, sha


def _mib(value: str) -> float | None:
    number = float(value)
    return None if number != number else round(number, 1)  # nan: no swap phase


def measure(path: Path, chunk_bytes: int, limit_mib: int | None, scratch: Path, code: Path) -> dict:
    db = scratch / f"bench-{os.getpid()}-{time.monotonic_ns()}.duckdb"
    load_before = os.getloadavg()[0]
    # Output goes to files: a full pipe would block the child while we wait for it.
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(db), str(chunk_bytes), str(limit_mib)],
            cwd=code,
            env={**os.environ, "PYTHONPATH": str(code)},
            stdout=out_file,
            stderr=err_file,
            text=True,
        )
        started = time.perf_counter()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if status != 0:
        raise SystemExit(f"child failed: {err[-2000:]}")
    line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
    rows_in, loaded, quarantined, filtered, seconds, imported, swap_hwm, swap_s = line.split()[1:]
    for leftover in scratch.glob(f"{db.name}*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    shutil.rmtree(scratch / "staging", ignore_errors=True)
    return {
        "rows_in": int(rows_in),
        "rows_loaded": int(loaded),
        "rows_lost": int(rows_in) - int(loaded) - int(quarantined) - int(filtered),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "after_imports_mib": _mib(imported),
        "peak_before_swap_mib": _mib(swap_hwm),
        "swap_seconds": _mib(swap_s),
        "ingest_seconds": round(float(seconds), 1),
        "rows_per_second": round(int(rows_in) / float(seconds)),
        "process_seconds": round(wall, 1),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[32, 128, 512, 2048])
    parser.add_argument(
        "--chunk-mib",
        type=int,
        nargs="+",
        default=[8],
        help="chunk size(s), safety.chunk_bytes: staged runs per size, before with the first",
    )
    parser.add_argument(
        "--memory-mib",
        type=int,
        nargs="+",
        default=[256],
        help="DuckDB cap(s), safety.ingest_memory_mib: staged runs per cap, before with the first",
    )
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--formats", nargs="+", default=["csv.gz"])
    parser.add_argument(
        "--before-ref", default=None, help="also measure the ingestion of this git revision"
    )
    parser.add_argument(
        "--before-max-mib", type=int, default=2048, help="measure `before` up to this size"
    )
    parser.add_argument(
        "--results-name", default="ingest_memory", help="benchmarks/results/NAME.{json,md}"
    )
    parser.add_argument(
        "--whole-file-max-mib",
        type=int,
        default=0,
        help="measure the whole-file mode up to this size (it needs memory ~ the file)",
    )
    args = parser.parse_args()
    machine = describe()
    print(f"machine: {machine}")
    scratch = Path(tempfile.mkdtemp(prefix="nightrec-ingest-mem-", dir=args.scratch))
    rows_out = []
    before_sha = None
    try:
        before_code = None
        if args.before_ref:
            before_code, before_sha = export_revision(args.before_ref, scratch)
        for size in args.sizes_mib:
            rows = size * 2**20 // BYTES_PER_ROW
            for suffix in args.formats:
                folder = scratch / f"{size}-{suffix}"
                folder.mkdir()
                path = folder / f"{DAY}.{suffix}"
                write_day(path, rows)
                file_mib = path.stat().st_size / 2**20
                chunks = [mib * 2**20 for mib in args.chunk_mib]
                modes = [
                    ("staged", chunk, cap, ROOT) for chunk in chunks for cap in args.memory_mib
                ]
                if before_code is not None and size <= args.before_max_mib:
                    before = f"before ({before_sha[:7]})"
                    modes.append((before, chunks[0], args.memory_mib[0], before_code))
                if size <= args.whole_file_max_mib:
                    modes.append(("whole file, DuckDB uncapped", 2 * size * 2**20, None, ROOT))
                for mode, chunk_bytes, limit, code in modes:
                    result = {
                        "file": f"{size} MiB of CSV as .{suffix}",
                        "csv_mib": size,
                        "file_mib_on_disk": round(file_mib, 1),
                        "mode": mode,
                        "chunk_mib": round(chunk_bytes / 2**20),
                        "duckdb_memory_mib": limit,
                        **measure(path, chunk_bytes, limit, scratch, code),
                    }
                    print(json.dumps(result), flush=True)
                    rows_out.append(result)
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = (
        f"{COMMAND} --sizes-mib {' '.join(map(str, args.sizes_mib))} "
        f"--chunk-mib {' '.join(map(str, args.chunk_mib))} "
        f"--memory-mib {' '.join(map(str, args.memory_mib))} "
        f"--formats {' '.join(args.formats)}"
        + (f" --before-ref {args.before_ref}" if args.before_ref else "")
        + (f" --before-max-mib {args.before_max_mib}" if args.before_ref else "")
        + (f" --whole-file-max-mib {args.whole_file_max_mib}" if args.whole_file_max_mib else "")
        + (f" --results-name {args.results_name}" if args.results_name != "ingest_memory" else "")
    )
    record = {
        "command": command,
        "before_commit": before_sha,
        "machine": machine,
        "results": rows_out,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.results_name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{args.results_name}.md").write_text(report(record) + "\n")
    print(f"recorded in {RESULTS / args.results_name}.md")


def report(record: dict) -> str:
    machine, rows_out = record["machine"], record["results"]
    loads = [x for r in rows_out for x in r["load_1min"]]
    lines = [
        "# Ingestion peak memory: staged chunks and one swap, against the file's size",
        "",
        f"`{record['command']}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"Python {machine['python']}, {machine['platform']}. Load average (1 min) at the "
        f"start and end of the runs: {min(loads, default=0):.2f} to {max(loads, default=0):.2f}.",
        "",
        "Peak RSS is the ingesting process's maximum resident set (kernel, wait4), including "
        "the interpreter, Polars, DuckDB and Great Expectations. `after imports` is its "
        "high-water mark before the file is opened; `peak before swap` the high-water mark "
        "when the swap transaction starts (end of the chunk phase).",
        "",
        "| file | on disk MiB | mode | chunk MiB | DuckDB cap MiB | rows in | rows lost | "
        "after imports MiB | peak before swap MiB | peak RSS MiB | ingest s | swap s | rows/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['file']} | {r['file_mib_on_disk']} | {r['mode']} | {r['chunk_mib']} | "
        f"{r['duckdb_memory_mib'] or 'none'} | {r['rows_in']:,} | {r['rows_lost']} | "
        f"{r['after_imports_mib']} | {r['peak_before_swap_mib'] or '-'} | "
        f"{r['peak_rss_mib']} | {r['ingest_seconds']} | {r['swap_seconds'] or '-'} | "
        f"{r['rows_per_second']:,} |"
        for r in rows_out
    ]
    lines.append("")
    settings = dict.fromkeys(
        (r["chunk_mib"], r["duckdb_memory_mib"]) for r in rows_out if r["mode"] == "staged"
    )
    for chunk, cap in settings:
        staged = [
            r
            for r in rows_out
            if r["mode"] == "staged" and (r["chunk_mib"], r["duckdb_memory_mib"]) == (chunk, cap)
        ]
        if len(staged) > 1:
            small, large = staged[0], staged[-1]
            lines.append(
                f"Staged, {chunk} MiB chunks, DuckDB cap {cap} MiB: peak at {large['csv_mib']} "
                f"MiB of CSV / peak at {small['csv_mib']} MiB = {large['peak_rss_mib']} / "
                f"{small['peak_rss_mib']} = {large['peak_rss_mib'] / small['peak_rss_mib']:.2f}."
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
