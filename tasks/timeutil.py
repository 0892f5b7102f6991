"""Small time helpers shared by stages: ages in days and run-date as-of instants."""

from __future__ import annotations

import datetime as dt

import polars as pl

from tasks.constants import TS, USER_ID

SECONDS_PER_DAY = 86_400.0


def age_days(as_of: dt.datetime, column: str = TS) -> pl.Expr:
    """Days between an event and as_of, as a float (0 = just before as_of)."""
    return (pl.lit(as_of) - pl.col(column)).dt.total_seconds() / SECONDS_PER_DAY


def start_of(day: dt.date) -> dt.datetime:
    """The instant `day` begins: as-of of an exclusive date (`--as-of T` sees events
    before T)."""
    return dt.datetime.combine(day, dt.time())


def run_as_of(run_date: dt.date) -> dt.datetime:
    """The as_of of an inclusive run date: a run for day D sees events strictly before
    D + 1 day (DESIGN.md)."""
    return start_of(run_date + dt.timedelta(days=1))


def events_before(events: pl.DataFrame, as_of: dt.datetime) -> pl.DataFrame:
    """The events a computation at `as_of` may see: strictly before it, never at it. The
    frame itself when all are (a snapshot already is): a filter would copy every event."""
    newest = events.get_column(TS).max()
    if newest is None or newest < as_of:
        return events
    return events.filter(pl.col(TS) < as_of)


def known_users(events: pl.DataFrame, as_of: dt.datetime) -> pl.Series:
    """Customers with any event before `as_of`, sorted: everyone a run recommends for."""
    return events_before(events, as_of).get_column(USER_ID).unique().sort()
