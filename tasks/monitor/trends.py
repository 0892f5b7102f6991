"""Run health across runs: the table `nightrec monitor` prints and the report's trend plots
read, from the store's `run_health` rows."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import polars as pl

from tasks.monitor.checks import CHECKS
from tasks.monitor.health import read_history

MARK = {"ok": "", "warn": " W", "fail": " F", "skip": ""}
# Short column names of the terminal table (`nightrec monitor`), in the order of CHECKS.
SHORT = {
    "model_age": "age",
    "rolling_ndcg": "ndcg",
    "volume": "vol",
    "duplicates": "dup",
    "new_customers": "newcu",
    "new_items": "newit",
    "quarantine": "quar",
    "input_drift": "in-psi",
    "fallback": "fallb",
    "score_ties": "ties",
    "coverage": "cov",
    "diversity": "div",
    "novelty": "nov",
    "overlap": "overl",
    "feature_drift": "feat",
    "model_validation": "valid",
}


def last_runs(db_path: Path, until: dt.date | None, runs: int) -> pl.DataFrame:
    """The checks of the newest `runs` run dates up to `until` (inclusive; None: the newest
    measured), oldest first."""
    if until is None:  # the table holds a few rows per run: read it whole
        history = read_history(db_path, dt.date(1, 1, 1), dt.date(9999, 1, 1))
    else:
        since = until - dt.timedelta(days=max(4 * runs, 60))
        history = read_history(db_path, since, until + dt.timedelta(days=1))
    dates = history.get_column("run_date").unique().sort().tail(runs)
    return history.filter(pl.col("run_date").is_in(dates.implode()))


def newest_alarms(history: pl.DataFrame) -> list[str]:
    """'DATE warn: check: detail' for each check off ok in the newest run."""
    if history.height == 0:
        return []
    newest = history.filter(pl.col("run_date") == pl.col("run_date").max())
    return [
        f"{r['run_date']} {r['status']}: {r['check_name']}: {r['detail']}"
        for r in newest.iter_rows(named=True)
        if r["status"] in ("warn", "fail")
    ]


def _cell(measure: float | None, status: str) -> str:
    if measure is None or (isinstance(measure, float) and math.isnan(measure)):
        return "-"
    return f"{measure:.2g}{MARK.get(status, '')}"


def trend_rows(history: pl.DataFrame, short: bool = False) -> list[dict[str, Any]]:
    """One row per run date: the run's overall status and each check's measure, marked W
    (warn) or F (fail); '-' where the check was skipped. `short`: the terminal's names."""
    rows: list[dict[str, Any]] = []
    for (day,), checks in history.group_by("run_date", maintain_order=True):
        by_name = {r["check_name"]: r for r in checks.iter_rows(named=True)}
        statuses = {r["status"] for r in by_name.values()}
        overall = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"
        row: dict[str, Any] = {"run_date": str(day), "health": overall}
        for name in CHECKS:
            found = by_name.get(name)
            column = SHORT[name] if short else name
            row[column] = _cell(found["measure"], found["status"]) if found else ""
        rows.append(row)
    return rows


def series(history: pl.DataFrame, name: str, column: str = "measure") -> pl.DataFrame:
    """(run_date, value, status) of one check over the runs."""
    return (
        history.filter(pl.col("check_name") == name)
        .select("run_date", pl.col(column).alias("value"), "status")
        .sort("run_date")
    )
