"""The evaluation protocol of DESIGN.md: a global temporal split at an as-of date T.

Train on events before T; the truth is the distinct items each customer purchased in
[T, T + H); the evaluated users bought something both before T and inside the window.
Everything here is a pure function over canonical event frames, so the backtest, the
promotion gate and the tests all cut the data the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from tasks.constants import DEFAULT_HORIZON_DAYS, EVENT_TYPE, ITEM_ID, PURCHASE, TS, USER_ID
from tasks.timeutil import events_before


def _window(as_of: datetime, horizon_days: int) -> tuple[datetime, datetime]:
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    return as_of, as_of + timedelta(days=horizon_days)


def truth_window(
    events: pl.DataFrame, as_of: datetime, horizon_days: int = DEFAULT_HORIZON_DAYS
) -> pl.DataFrame:
    """Distinct (user_id, item_id) purchased in [as_of, as_of + horizon), sorted.

    Distinct because relevance is binary: buying an item twice in the window is one hit.
    """
    start, end = _window(as_of, horizon_days)
    return (
        events.filter((pl.col(EVENT_TYPE) == PURCHASE) & (pl.col(TS) >= start) & (pl.col(TS) < end))
        .select(USER_ID, ITEM_ID)
        .unique()
        .sort(USER_ID, ITEM_ID)
    )


def evaluated_users(
    events: pl.DataFrame, as_of: datetime, horizon_days: int = DEFAULT_HORIZON_DAYS
) -> pl.Series:
    """Sorted ids of users who purchased before `as_of` and inside the window, by the loaded
    purchase events alone (the tuning folds and the gate; `protocol_users` for reports).

    Cold users (no purchase before T) are left out: no model can know them, and the
    baselines.md numbers are quoted over known customers only.
    """
    return protocol_users(events.filter(pl.col(EVENT_TYPE) == PURCHASE), as_of, horizon_days)


def protocol_users(
    lines: pl.DataFrame, as_of: datetime, horizon_days: int = DEFAULT_HORIZON_DAYS
) -> pl.Series:
    """The protocol's evaluated customers, sorted: an order line before `as_of` and one in
    [as_of, as_of + horizon). `lines` holds (user_id, ts) of every order line, an item or not
    (tasks/ingest/activity.py): a customer whose window holds only fee lines counts, with an
    empty truth (every metric 0), and so does one whose only earlier lines are fees (the run
    knows no history for them; they count with whatever it publishes, often nothing).
    """
    start, end = _window(as_of, horizon_days)
    before = events_before(lines, start).select(USER_ID).unique()
    inside = lines.filter((pl.col(TS) >= start) & (pl.col(TS) < end)).select(USER_ID).unique()
    return before.join(inside, on=USER_ID, how="semi").get_column(USER_ID).sort()
