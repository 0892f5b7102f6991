"""Wall time of `nightrec --help` and of every `nightrec COMMAND --help` (median of N runs),
and which heavy libraries a help run imports (none should be).

    python benchmarks/cli_help.py [--runs 5] [--out benchmarks/results/cli_help.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    [],
    ["demo"],
    ["ingest"],
    ["run"],
    ["backfill"],
    ["evaluate"],
    ["tune"],
    ["models", "list"],
    ["quarantine", "list"],
    ["monitor"],
    ["drill"],
    ["server"],
    ["serve"],
]
HEAVY = ("torch", "lightgbm", "polars", "prefect", "great_expectations", "duckdb", "optuna")
PROBE = (
    "import sys\n"
    "from flows.cli import main\n"
    "sys.argv = ['nightrec', *sys.argv[1:], '--help']\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
)


def time_help(args: list[str], runs: int) -> tuple[float, str]:
    times, heavy = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(time.perf_counter() - started)
        heavy = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    return statistics.median(times), heavy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = []
    for command in COMMANDS:
        median, heavy = time_help(command, args.runs)
        name = " ".join(["nightrec", *command, "--help"])
        rows.append((name, median, heavy or "none"))
        print(f"{name:36s} median {median:.2f} s   heavy imports: {heavy or 'none'}")
    load_after = os.getloadavg()
    machine = f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    load = f"load average (1, 5, 15 min) {load_before} before, {load_after} after"
    print(machine)
    print(load)
    if args.out:
        lines = [
            "# `nightrec --help` wall time",
            "",
            f"`python benchmarks/cli_help.py --runs {args.runs}`: median of {args.runs} runs of "
            "each help in a fresh interpreter (imports included).",
            "",
            f"Machine: {machine}; {load}.",
            "",
            "| command | median wall (s) | heavy libraries imported |",
            "| --- | --- | --- |",
            *(f"| `{n}` | {t:.2f} | {h} |" for n, t, h in rows),
            "",
        ]
        args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
