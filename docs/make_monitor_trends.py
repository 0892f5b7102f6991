"""docs/monitor-trends.png: the run report's trend plots over the newest runs of a store.

    python docs/make_monitor_trends.py --home HOME [--runs 30] [--out docs/monitor-trends.png]

HOME is the NIGHTREC_HOME of a backfill (README, "Run health": how docs/monitor-trends.png was
made from 30 days of Online Retail).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tasks.monitor.plots import plot_trends
from tasks.monitor.trends import last_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "monitor-trends.png")
    args = parser.parse_args()
    history = last_runs(args.home / "nightrec.duckdb", None, args.runs)
    days = history.get_column("run_date").unique().sort()
    title = f"Run health, {days.len()} runs {days[0]}..{days[-1]}"
    print(plot_trends(history, args.out, title))


if __name__ == "__main__":
    main()
