"""Benchmark: peak memory of writing the run's events snapshot to Parquet, two ways.

DuckDB writes `sql/events_snapshot.sql` (every event before as-of, sorted) to Parquet either
through the relation API (`con.sql(q).write_parquet(path)`, what the snapshot did before) or
through SQL COPY (what tasks/features/snapshot.py does now), with the buffer pool capped at
`scale.snapshot_memory_mib` as the run does. Each way runs in a fresh child process, three
times, interleaved; the peak RSS (VmHWM) and wall seconds of each are printed and recorded in
benchmarks/results/snapshot_memory.{json,md}.

    .venv/bin/python benchmarks/snapshot_memory.py --db STORE --as-of 2026-05-04 [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WAYS = ("relation", "copy")

CHILD = r"""
import datetime as dt, sys, time
import duckdb
sys.path.insert(0, sys.argv[5])
from tasks.store import sql_text
db, way, as_of, out, _, mib = sys.argv[1:7]
con = duckdb.connect(db, read_only=True)
con.execute(f"set memory_limit = '{int(mib)}MB'")
params = {"as_of": dt.datetime.fromisoformat(as_of)}
query = sql_text("events_snapshot").strip().rstrip(";")
started = time.perf_counter()
if way == "relation":
    con.sql(query, params=params).write_parquet(out, compression="zstd")
else:
    copy = f"copy (\n{query}\n) to $p (format parquet, compression zstd)"
    con.execute(copy, {**params, "p": out})
seconds = time.perf_counter() - started
con.close()
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(seconds, peak // 1024)
"""


def run_once(db: Path, way: str, as_of: str, out: Path, memory_mib: int) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), way, as_of, str(out), str(ROOT), str(memory_mib)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak = done.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a store (opened read-only)")
    parser.add_argument("--as-of", required=True, help="snapshot instant, e.g. 2026-05-04")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory-mib", type=int, default=256, help="DuckDB's memory_limit")
    parser.add_argument("--out", type=Path, default=RESULTS / "snapshot_memory")
    args = parser.parse_args()
    machine = describe()
    load_before = os.getloadavg()
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"snapshot-memory-{os.getpid()}.parquet"
    runs: dict[str, list[tuple[float, int]]] = {w: [] for w in WAYS}
    for i in range(args.runs):
        for way in WAYS:
            runs[way].append(run_once(args.db, way, args.as_of, out, args.memory_mib))
            print(f"run {i + 1} {way}: {runs[way][-1][0]:.1f} s, peak {runs[way][-1][1]} MiB")
    out.unlink(missing_ok=True)
    summary = {
        way: {
            "median_s": round(statistics.median(s for s, _ in r), 1),
            "median_peak_mib": statistics.median(p for _, p in r),
            "runs": r,
        }
        for way, r in runs.items()
    }
    result = {
        "benchmark": "snapshot_memory",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "load_average": [list(load_before), list(os.getloadavg())],
        "store": args.db.name,
        "as_of": args.as_of,
        "memory_limit_mib": args.memory_mib,
        "ways": summary,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Writing the events snapshot: relation API vs COPY",
        "",
        f"Measured {result['measured_at']} on {machine}; load average {load_before[0]:.1f} -> "
        f"{os.getloadavg()[0]:.1f}. Store `{args.db.name}`, as-of {args.as_of}, DuckDB "
        f"memory_limit {args.memory_mib} MB, {args.runs} runs of each way, interleaved, each in "
        "a fresh process (peak = its VmHWM, Python and DuckDB included).",
        "",
        "| way | median s | median peak MiB | runs (s, MiB) |",
        "| --- | ---: | ---: | --- |",
    ]
    for way, s in summary.items():
        lines.append(
            f"| {way} | {s['median_s']} | {s['median_peak_mib']} | "
            + ", ".join(f"{a:.1f} s / {b}" for a, b in s["runs"])
            + " |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
