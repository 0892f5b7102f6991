"""What the benchmarks that score the validation folds before each development cut share:
their common arguments, the start (machine, load, events, settings) and the results files."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from default_provenance import CUTS, RESULTS
from machine import describe
from ranking_quality import load

from tasks.settings import Settings, load_settings


def add_common_args(parser: argparse.ArgumentParser, name: str, work: Path) -> None:
    parser.add_argument("--db", type=Path, required=True, help="a store with every day ingested")
    parser.add_argument("--work", type=Path, default=work, help="cached windows and fold results")
    parser.add_argument("--name", default=name, help="benchmarks/results/NAME.md and NAME.json")
    parser.add_argument(
        "--cuts",
        nargs="+",
        type=dt.datetime.fromisoformat,
        default=list(CUTS),
        choices=list(CUTS),
        help="development cuts (exclusive as-of instants) whose folds are scored",
    )


@dataclass(frozen=True)
class Start:
    machine: dict
    load_start: float
    events: pl.DataFrame
    catalog: pl.DataFrame
    settings: Settings


def start(args: argparse.Namespace) -> Start:
    """Print the machine and load, read the store, and load the settings of the work folder."""
    args.work.mkdir(parents=True, exist_ok=True)
    machine = describe()
    load_start = os.getloadavg()[0]
    print(f"machine: {machine}; load average {load_start:.1f}", flush=True)
    events, catalog = load(args.db)
    return Start(machine, load_start, events, catalog, load_settings(home=args.work / "home"))


def cuts_flag(args: argparse.Namespace) -> str:
    return f"--cuts {' '.join(f'{c:%Y-%m-%d}' for c in args.cuts)}"


def write_results(name: str, record: dict, render: Callable[[dict], str]) -> None:
    """benchmarks/results/NAME.json and NAME.md, and the page on stdout."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2))
    page = render(record)
    (RESULTS / f"{name}.md").write_text(page)
    print(page)
