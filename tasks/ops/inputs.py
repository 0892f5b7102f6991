"""Is there anything to recommend from? Checked before Prefect starts (CLI, from the store) and
again inside the flow (from the run's snapshot, after the day's ingestion).

A run without events, without a catalog, or whose newest event is older than
`safety.max_input_age_days` before the run date stops with one line naming what is missing;
a stale input may be allowed (`safety.allow_stale_input`), and is then recorded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tasks.errors import NightrecError
from tasks.features.snapshot import Snapshot
from tasks.timeutil import run_as_of

INGEST_HINT = (
    "load events first: `nightrec ingest --source S --path DIR` "
    "(or `nightrec run --landing DIR --source S`)"
)


class NoInput(NightrecError):
    """The store holds nothing the run could recommend from."""

    hint = INGEST_HINT


class EmptyCatalog(NightrecError):
    """Events exist but no item may be recommended: every candidate would be filtered away."""

    hint = (
        "put catalog.csv beside the day files and run `nightrec ingest` again "
        "(a source without one gets its items from the events)"
    )


class StaleInput(NightrecError):
    """The newest event is too old for the run date."""

    hint = (
        "ingest the missing days, or allow it: NIGHTREC_SAFETY__ALLOW_STALE_INPUT=true "
        "(or raise NIGHTREC_SAFETY__MAX_INPUT_AGE_DAYS)"
    )


@dataclass(frozen=True)
class InputState:
    """What a run for `run_date` would see."""

    run_date: dt.date
    events: int  # events before as-of
    watermark: dt.datetime | None  # the newest of them
    catalog_items: int

    @property
    def age_days(self) -> int | None:
        """Whole days between the newest event's day and the run date (0 = same day)."""
        return None if self.watermark is None else (self.run_date - self.watermark.date()).days


def read_input_state(db_path: Path, run_date: dt.date) -> InputState:
    """The input of a run for `run_date`, read from the store (read-only)."""
    from tasks.store import connect, sql_text

    if not db_path.exists():
        raise NoInput(f"no store at {db_path}: nothing has been ingested")
    with connect(db_path, read_only=True) as con:
        events, watermark, items = con.execute(
            sql_text("input_state"), {"as_of": run_as_of(run_date)}
        ).fetchone()
    return InputState(run_date, int(events), watermark, int(items))


def newest_event_day(db_path: Path) -> dt.date:
    """The day of the store's newest event: the default date of `run`, `tune`, `evaluate`."""
    state = read_input_state(db_path, dt.date.max - dt.timedelta(days=1))
    if state.watermark is None:
        raise NoInput(f"no events in {db_path}: nothing to work on")
    return state.watermark.date()


def snapshot_input_state(snapshot: Snapshot, run_date: dt.date) -> InputState:
    """The input of a run for `run_date` as its snapshot holds it (after the day's ingest)."""
    catalog_items = pl.scan_parquet(snapshot.catalog_path).select(pl.len()).collect().item()
    return InputState(run_date, snapshot.n_events, snapshot.watermark, catalog_items)


def check_input(
    state: InputState, max_age_days: int, allow_stale: bool, where: str = "the store"
) -> str | None:
    """Raise on a run that cannot serve; return a note when a stale input is allowed."""
    as_of = run_as_of(state.run_date)
    if state.events == 0:
        raise NoInput(f"no events before {as_of:%Y-%m-%d %H:%M} in {where}: nothing to recommend")
    if state.catalog_items == 0:
        raise EmptyCatalog(f"the catalog in {where} is empty: every candidate would be filtered")
    age = state.age_days
    if age is not None and age > max_age_days:
        message = (
            f"input is stale: the newest event is {state.watermark:%Y-%m-%d %H:%M}, "
            f"{age} days before the run date {state.run_date} (allowed: {max_age_days})"
        )
        if not allow_stale:
            raise StaleInput(message)
        return message
    return None
