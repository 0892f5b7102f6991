"""Quarantined rows: list them by reason, and replay them after a fix.

A replay rebuilds the raw rows from their JSON payloads, runs them through the source adapter
and the contract again, loads those that now pass, counts those the adapter now filters, and
keeps the rest quarantined (with today's reason). The day's `ingestions` counts are updated in
the same transaction so that rows in = loaded + quarantined + filtered stays exact. Replayed
rows stay in `quarantine` with `replayed_at` set: the history is kept, nothing is deleted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from tasks.constants import EVENT_COLUMNS
from tasks.ingest.adapters import REASON, adapter_for
from tasks.ingest.landing import IngestError
from tasks.ingest.load import day_bounds, insert_staged
from tasks.ingest.stale import flag_stale, published_dates
from tasks.store import connect, sql_text
from tasks.validate.contracts import ROW_INDEX, validate_rows

REPLAYABLE = ("loaded", "replaced")  # a rejected file is re-ingested whole, not replayed


@dataclass(frozen=True)
class ReplayResult:
    source: str
    day: dt.date
    replayed: int
    loaded: int
    filtered: int
    still_quarantined: int
    stale_runs: list[str]


def _filters(source: str | None, reason: str | None, day: dt.date | None) -> dict:
    """The optional filters of the quarantine queries, bound as parameters (None: any)."""
    return {"source": source, "reason": reason, "event_day": day}


def quarantine_summary(
    db_path: Path, source: str | None = None, reason: str | None = None, day: dt.date | None = None
) -> list[dict]:
    """Open (not replayed) quarantined rows counted by source, day and reason."""
    with connect(db_path) as con:
        rows = con.execute(sql_text("quarantine_summary"), _filters(source, reason, day)).fetchall()
    return [
        {"source": s, "day": d.isoformat(), "reason": r, "rows": n, "file": status}
        for s, d, r, n, status in rows
    ]


def quarantine_rows(
    db_path: Path,
    source: str | None = None,
    reason: str | None = None,
    day: dt.date | None = None,
    limit: int = 20,
) -> list[dict]:
    """The first `limit` open rows, with their raw row."""
    with connect(db_path) as con:
        rows = con.execute(
            sql_text("quarantine_rows"), {**_filters(source, reason, day), "limit": limit}
        ).fetchall()
    return [
        {"source": s, "day": d.isoformat(), "row": n, "reason": r, "payload": p}
        for s, d, n, r, p in rows
    ]


def _raw_frame(payloads: list[str]) -> pl.DataFrame:
    """Raw rows back from their JSON payloads, every column as text (as read_raw gives)."""
    records = [json.loads(p) for p in payloads]
    columns = list(dict.fromkeys(c for r in records for c in r))
    return pl.DataFrame(
        {c: [None if r.get(c) is None else str(r[c]) for r in records] for c in columns},
        schema=dict.fromkeys(columns, pl.Utf8),
    )


def _replay_day(
    con: duckdb.DuckDBPyConnection,
    source: str,
    day: dt.date,
    reason: str | None,
    published: list[dt.date],
) -> ReplayResult:
    day_key = {"source": source, "event_day": day}
    rows = con.execute(sql_text("quarantine_open"), {**day_key, "reason": reason}).fetchall()
    if not rows:
        return ReplayResult(source, day, 0, 0, 0, 0, [])
    numbers = [r[0] for r in rows]
    raw = _raw_frame([r[1] for r in rows])
    adapted = adapter_for(source).adapt(raw)
    outcome = validate_rows("events", adapted.events, day_bounds(day))
    bad = pl.concat([adapted.rejected, outcome.bad_rows])
    events = adapted.events.join(outcome.bad_rows, on=ROW_INDEX, how="anti")
    defaulted_now = Counter(
        adapted.defaulted.join(outcome.bad_rows, on=ROW_INDEX, how="anti")[REASON].to_list()
    )
    number_of = pl.DataFrame({ROW_INDEX: range(len(numbers)), "row_number": numbers}).cast(
        {ROW_INDEX: pl.Int64}
    )
    loaded = events.join(number_of, on=ROW_INDEX).get_column("row_number").to_list()
    still = bad.join(number_of, on=ROW_INDEX).select("row_number", "reason")
    filtered_n = len(numbers) - len(loaded) - still.height
    params = {"source": source, "event_day": day, "source_file": rows[0][2]}
    con.execute("begin transaction")
    try:
        insert_staged(con, "events", events.select(EVENT_COLUMNS), params)
        done = sorted(set(numbers) - set(still.get_column("row_number").to_list()))
        con.execute(sql_text("quarantine_replayed"), {**day_key, "row_numbers": done})
        for number, new_reason in still.iter_rows():
            con.execute(
                sql_text("quarantine_reason"),
                {**day_key, "reason": new_reason, "row_number": number},
            )
        open_reasons = dict(con.execute(sql_text("quarantine_open_reasons"), day_key).fetchall())
        filtered_json, defaulted_json = con.execute(
            sql_text("ingestion_reasons"), day_key
        ).fetchone()
        filtered = Counter(json.loads(filtered_json)) + Counter(adapted.filtered)
        defaulted = Counter(json.loads(defaulted_json or "{}")) + defaulted_now
        con.execute(
            sql_text("ingestions_replayed"),
            {
                **day_key,
                "loaded": len(loaded),
                "quarantined": sum(open_reasons.values()),
                "filtered": filtered_n,
                "filtered_reasons": json.dumps(dict(sorted(filtered.items()))),
                "quarantine_reasons": json.dumps(open_reasons),
                "defaulted_reasons": json.dumps(dict(sorted(defaulted.items()))),
            },
        )
        stale = (
            flag_stale(con, published, source, day, f"day {day}: quarantine replayed")
            if loaded
            else []
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return ReplayResult(
        source,
        day,
        len(numbers),
        len(loaded),
        filtered_n,
        still.height,
        [d.isoformat() for d in stale],
    )


def replay_quarantine(
    db_path: Path,
    source: str | None = None,
    reason: str | None = None,
    day: dt.date | None = None,
    published_root: Path | None = None,
) -> list[ReplayResult]:
    """Replay open quarantined rows of loaded days (one transaction per day)."""
    with connect(db_path) as con:
        days = con.execute(sql_text("quarantine_days"), _filters(source, reason, day)).fetchall()
        rejected = [f"{s} {d}" for s, d, status in days if status not in REPLAYABLE]
        if rejected and len(rejected) == len(days):
            raise IngestError(
                f"quarantined rows of {', '.join(rejected)} belong to rejected file(s); "
                "fix the file and ingest it again instead of replaying"
            )
        published = published_dates(published_root)
        return [
            _replay_day(con, s, d, reason, published)
            for s, d, status in days
            if status in REPLAYABLE
        ]
