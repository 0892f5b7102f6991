"""Retention: the nightly run drops events and quarantined raw rows older than
`privacy.retention_days` before its as-of, before it takes its snapshot.

The settings refuse a retention shorter than the longest look-back a run needs
(`Settings.lookback_days`), so no bounded feature or candidate source loses a day it reads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

import duckdb

from tasks.progress import stage_task
from tasks.settings import Settings
from tasks.store import connect, sql_text

log = logging.getLogger("nightrec.privacy")


def retention_horizon(as_of: dt.datetime, retention_days: int) -> dt.datetime:
    """Events before this instant are dropped: `retention_days` whole days before as-of."""
    return as_of - dt.timedelta(days=retention_days)


def apply_retention(settings: Settings, as_of: dt.datetime) -> dict[str, Any] | None:
    """Drop what the retention no longer admits; returns what was dropped (for the manifest),
    None when no retention is set. Deleted rows' bytes may stay in the DuckDB file's freed
    blocks until DuckDB reuses them; `nightrec forget` compacts the file (README, Privacy)."""
    days = settings.privacy.retention_days
    if days is None:
        return None
    before = retention_horizon(as_of, days)
    before_day = before.date()
    with connect(settings.db_path) as con:
        (events,) = con.execute(sql_text("events_retention_count"), {"before": before}).fetchone()
        (quarantined,) = con.execute(
            sql_text("quarantine_retention_count"), {"before_day": before_day}
        ).fetchone()
        if events or quarantined:
            con.execute("begin transaction")
            try:
                con.execute(sql_text("events_retention"), {"before": before})
                con.execute(sql_text("quarantine_retention"), {"before_day": before_day})
                con.execute("commit")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("rollback")
                raise
    if events or quarantined:
        log.info(
            "retention %d days: dropped %s event(s) before %s and %s quarantined row(s) of days "
            "before %s",
            days,
            f"{events:,}",
            before.isoformat(sep=" "),
            f"{quarantined:,}",
            before_day,
        )
    return {
        "retention_days": days,
        "events_before": before.isoformat(),
        "events_dropped": int(events),
        "quarantined_dropped": int(quarantined),
    }


def privacy_fields(settings: Settings, retention: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's `privacy`: the id mode and what retention dropped (never the key)."""
    return {
        "ids": "pseudonymized" if settings.privacy.pseudonymize else "raw",
        "retention": retention,
    }


retention_task = stage_task("retention", apply_retention)
