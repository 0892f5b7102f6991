"""Benchmark: peak memory of ingesting one large landing file, streamed in chunks.

Generates canonical day files of growing size (plain CSV and gzip) in a temp folder, then
ingests each in a fresh process (`ingest_file`, the same path `nightrec ingest` takes) and
reads that process's peak RSS from the kernel (wait4). Two modes per file: streamed with
`--chunk-mib` chunks (the default path), and one chunk as large as the file (what reading
the whole file at once costs), to show that streaming keeps the peak flat as files grow.

Prints and records benchmarks/results/ingest_memory.{json,md}.

    .venv/bin/python benchmarks/ingest_memory.py [--sizes-mib 64 256 512] [--chunk-mib 16]
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
from tasks.ingest.load import ingest_file
from tasks.store import connect
path, db, chunk = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
limit = int(sys.argv[4]) if sys.argv[4] != "None" else None
started = time.perf_counter()
with connect(db, memory_limit_mib=limit) as con:
    r = ingest_file(con, "canonical", path, max_bad_share=0.05, chunk_bytes=chunk)
seconds = time.perf_counter() - started
print("RESULT", r.rows_in, r.rows_loaded, r.rows_quarantined, r.rows_filtered, seconds)
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


def measure(path: Path, chunk_bytes: int, limit_mib: int | None, scratch: Path) -> dict:
    db = scratch / f"bench-{os.getpid()}-{time.monotonic_ns()}.duckdb"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(db), str(chunk_bytes), str(limit_mib)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.perf_counter()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out, err = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise SystemExit(f"child failed: {err[-2000:]}")
    line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
    rows_in, loaded, quarantined, filtered, seconds = line.split()[1:]
    for leftover in scratch.glob(f"{db.name}*"):
        leftover.unlink()
    return {
        "rows_in": int(rows_in),
        "rows_loaded": int(loaded),
        "rows_lost": int(rows_in) - int(loaded) - int(quarantined) - int(filtered),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "ingest_seconds": round(float(seconds), 1),
        "process_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--chunk-mib", type=int, default=16)
    parser.add_argument(
        "--memory-mib", type=int, default=256, help="DuckDB cap (safety.ingest_memory_mib)"
    )
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--formats", nargs="+", default=["csv", "csv.gz"])
    parser.add_argument(
        "--whole-file-max-mib",
        type=int,
        default=128,
        help="measure the whole-file mode only up to this size (it needs memory ~ the file)",
    )
    args = parser.parse_args()
    machine = describe()
    print(f"machine: {machine}")
    scratch = Path(tempfile.mkdtemp(prefix="nightrec-ingest-mem-", dir=args.scratch))
    rows_out = []
    try:
        for size in args.sizes_mib:
            rows = size * 2**20 // BYTES_PER_ROW
            for suffix in args.formats:
                folder = scratch / f"{size}-{suffix}"
                folder.mkdir()
                path = folder / f"{DAY}.{suffix}"
                write_day(path, rows)
                file_mib = path.stat().st_size / 2**20
                modes = [("streamed", args.chunk_mib * 2**20, args.memory_mib)]
                if size <= args.whole_file_max_mib:
                    modes.append(("whole file, DuckDB uncapped", 2 * size * 2**20, None))
                for mode, chunk, limit in modes:
                    result = {
                        "file": f"{size} MiB of CSV as .{suffix}",
                        "file_mib_on_disk": round(file_mib, 1),
                        "mode": mode,
                        "chunk_mib": round(chunk / 2**20),
                        "duckdb_memory_mib": limit,
                        **measure(path, chunk, limit, scratch),
                    }
                    print(json.dumps(result))
                    rows_out.append(result)
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"command": COMMAND, "machine": machine, "results": rows_out}
    (RESULTS / "ingest_memory.json").write_text(json.dumps(record, indent=2))
    lines = [
        "# Ingestion peak memory: streamed chunks vs the whole file at once",
        "",
        f"`{COMMAND} --sizes-mib {' '.join(map(str, args.sizes_mib))} "
        f"--chunk-mib {args.chunk_mib} --memory-mib {args.memory_mib} "
        f"--formats {' '.join(args.formats)} --whole-file-max-mib {args.whole_file_max_mib}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"Python {machine['python']}; shared with other engineers' jobs (timings are noisy, "
        "memory figures are not).",
        "",
        "Peak RSS is the ingesting process's maximum resident set (kernel, wait4), including "
        "the interpreter, Polars, DuckDB and Great Expectations (about 300 MiB before any "
        "data).",
        "",
        "| file | on disk MiB | mode | chunk MiB | rows in | rows lost | peak RSS MiB | ingest s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['file']} | {r['file_mib_on_disk']} | {r['mode']} | {r['chunk_mib']} | "
        f"{r['duckdb_memory_mib'] or 'none'} | "
        f"{r['rows_in']:,} | {r['rows_lost']} | {r['peak_rss_mib']} | {r['ingest_seconds']} |"
        for r in rows_out
    ]
    (RESULTS / "ingest_memory.md").write_text("\n".join(lines) + "\n")
    print(f"recorded in {RESULTS / 'ingest_memory.md'}")


if __name__ == "__main__":
    main()
