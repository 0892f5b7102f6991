"""Benchmark: DuckDB's own memory when one transaction loads a large day, by way of loading.

Isolates the store from the rest of ingestion (no reader, adapter or Great Expectations): a
Parquet file of N canonical events is generated once, then a fresh process per case loads it
into the `events` table (sql/schema.sql) in ONE transaction and reports its peak RSS (wait4):

- `chunks in one transaction`: Arrow batches of 131,072 rows inserted one statement each
  inside the open transaction (how ingestion loaded a day before staging);
- `insert-select`: one `insert into events select ... from read_parquet(...)` (the swap of
  staged ingestion), under several DuckDB settings;
- `replace`: the same insert-select after deleting the day's N rows in the same transaction
  (the day was loaded by an earlier process, as when a day is re-ingested).

Every case ends with the connection closed (its checkpoint included in the peak).

    .venv/bin/python benchmarks/duckdb_insert_memory.py [--rows-m 2 8 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COMMAND = ".venv/bin/python benchmarks/duckdb_insert_memory.py"
GENERATE = """
copy (
    select
        'u' || (random() * 50000)::int as user_id,
        'i' || (random() * 5000)::int as item_id,
        (['view', 'cart', 'purchase'])[1 + (random() * 2)::int] as event_type,
        timestamp '2026-01-05' + to_seconds((random() * 86399)::int) as ts,
        (1 + random() * 4)::bigint as quantity,
        round(random() * 50, 2) as price,
        null::varchar as order_id,
        's' || (random() * 1e6)::int as session_id
    from range({rows})
) to '{path}' (format parquet)
"""
CHILD = """
import sys, time
from pathlib import Path
import duckdb
import pyarrow.parquet as pq

src, db, mode, sql_dir = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
settings = sys.argv[5:]
con = duckdb.connect(db)
con.execute("set enable_progress_bar = false")
con.execute((sql_dir / "schema.sql").read_text())
load = "insert into events select *, 'canonical', date '2026-01-05', 'bench' from {}"
for setting in settings:
    name, value = setting.split("=", 1)
    con.execute(f"set {name} = '{value}'")
started = time.perf_counter()
con.execute("begin transaction")
if mode == "replace":
    con.execute("delete from events where event_day = date '2026-01-05'")
if mode == "chunks":
    for batch in pq.ParquetFile(src).iter_batches(batch_size=131072):
        con.register("staged_events", batch)
        con.execute(load.format("staged_events"))
        con.unregister("staged_events")
else:
    con.execute(load.format("read_parquet(?)"), [src])
con.execute("commit")
rows = con.execute("select count(*) from events").fetchone()[0]
con.close()
print("RESULT", rows, time.perf_counter() - started)
"""
CASES = [
    ("chunks in one transaction", "chunks", ["memory_limit=256MiB"]),
    ("insert-select", "select", ["memory_limit=256MiB"]),
    ("insert-select", "select", ["memory_limit=128MiB"]),
    ("insert-select", "select", ["memory_limit=1024MiB"]),
    ("insert-select", "select", ["memory_limit=256MiB", "preserve_insertion_order=false"]),
    ("insert-select", "select", ["memory_limit=256MiB", "threads=1"]),
    ("replace", "replace", ["memory_limit=256MiB"]),
]


def measure(src: Path, scratch: Path, mode: str, settings: list[str]) -> dict:
    db = scratch / f"bench-{time.monotonic_ns()}.duckdb"
    if mode == "replace":  # the day as an earlier process left it
        _run(src, db, "select", settings)
    result = _run(src, db, mode, settings)
    for leftover in scratch.glob(f"{db.name}*"):
        leftover.unlink()
    return result


def _run(src: Path, db: Path, mode: str, settings: list[str]) -> dict:
    args = [sys.executable, "-c", CHILD, str(src), str(db), mode, str(ROOT / "sql"), *settings]
    # Output goes to files: a full pipe would block the child while we wait for it.
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen(args, stdout=out_file, stderr=err_file, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if status != 0:
        raise SystemExit(f"child failed: {err[-2000:]}")
    rows, seconds = [x for x in out.splitlines() if x.startswith("RESULT ")][-1].split()[1:]
    return {
        "rows_in_table": int(rows),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "seconds": round(float(seconds), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-m", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args()
    machine = describe()
    print(f"machine: {machine}, duckdb {duckdb.__version__}")
    scratch = Path(tempfile.mkdtemp(prefix="nightrec-duckdb-mem-", dir=args.scratch))
    rows_out = []
    try:
        for millions in args.rows_m:
            src = scratch / f"events-{millions}m.parquet"
            with duckdb.connect() as con:  # our own path and count, not user input
                con.execute(GENERATE.format(rows=millions * 1_000_000, path=src))
            for name, mode, settings in CASES:
                result = {
                    "rows_m": millions,
                    "case": name,
                    "settings": settings,
                    "load_1min": round(os.getloadavg()[0], 2),
                    **measure(src, scratch, mode, settings),
                }
                print(json.dumps(result), flush=True)
                rows_out.append(result)
            src.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = f"{COMMAND} --rows-m {' '.join(map(str, args.rows_m))}"
    record = {
        "command": command,
        "duckdb": duckdb.__version__,
        "machine": machine,
        "results": rows_out,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "duckdb_insert_memory.json").write_text(json.dumps(record, indent=2) + "\n")
    loads = [r["load_1min"] for r in rows_out]
    lines = [
        "# DuckDB's memory when one transaction loads a day, by way of loading",
        "",
        f"`{command}` (DuckDB {duckdb.__version__})",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"Python {machine['python']}. Load average (1 min) during the runs: "
        f"{min(loads, default=0):.2f} to {max(loads, default=0):.2f}. A bare process with "
        "DuckDB and the schema is about 60 MiB.",
        "",
        "| rows | case | settings | peak RSS MiB | seconds |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['rows_m']}M | {r['case']} | {', '.join(r['settings'])} | {r['peak_rss_mib']} | "
        f"{r['seconds']} |"
        for r in rows_out
    ]
    (RESULTS / "duckdb_insert_memory.md").write_text("\n".join(lines) + "\n")
    print(f"recorded in {RESULTS / 'duckdb_insert_memory.md'}")


if __name__ == "__main__":
    main()
