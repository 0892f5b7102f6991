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
from tasks.store import connect
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


def _filters(source: str | None, reason: str | None, day: dt.date | None) -> tuple[str, list]:
    clauses, args = ["q.replayed_at is null"], []
    for column, value in (("q.source", source), ("q.reason", reason), ("q.event_day", day)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    return " and ".join(clauses), args


def quarantine_summary(
    db_path: Path, source: str | None = None, reason: str | None = None, day: dt.date | None = None
) -> list[dict]:
    """Open (not replayed) quarantined rows counted by source, day and reason."""
    where, args = _filters(source, reason, day)
    with connect(db_path) as con:
        rows = con.execute(
            "select q.source, q.event_day, q.reason, count(*) as n, "
            "any_value(i.status) as file_status "
            "from quarantine q left join ingestions i using (source, event_day) "
            f"where {where} group by all order by 1, 2, 3",
            args,
        ).fetchall()
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
    where, args = _filters(source, reason, day)
    with connect(db_path) as con:
        rows = con.execute(
            "select q.source, q.event_day, q.row_number, q.reason, q.payload from quarantine q "
            f"where {where} order by 1, 2, 3 limit ?",
            [*args, limit],
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
    query = (
        "select row_number, payload, source_file from quarantine "
        "where source = ? and event_day = ? and replayed_at is null"
    )
    args: list = [source, day]
    if reason is not None:
        query += " and reason = ?"
        args.append(reason)
    rows = con.execute(query + " order by row_number", args).fetchall()
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
        con.execute(
            "update quarantine set replayed_at = current_localtimestamp() "
            "where source = ? and event_day = ? and row_number in (select unnest(?))",
            [source, day, done],
        )
        for number, new_reason in still.iter_rows():
            con.execute(
                "update quarantine set reason = ? "
                "where source = ? and event_day = ? and row_number = ?",
                [new_reason, source, day, number],
            )
        open_reasons = dict(
            con.execute(
                "select reason, count(*) from quarantine where source = ? and event_day = ? "
                "and replayed_at is null group by reason order by reason",
                [source, day],
            ).fetchall()
        )
        filtered_json, defaulted_json = con.execute(
            "select filtered_reasons, defaulted_reasons from ingestions "
            "where source = ? and event_day = ?",
            [source, day],
        ).fetchone()
        filtered = Counter(json.loads(filtered_json)) + Counter(adapted.filtered)
        defaulted = Counter(json.loads(defaulted_json or "{}")) + defaulted_now
        con.execute(
            "update ingestions set rows_loaded = rows_loaded + ?, "
            "rows_quarantined = ?, rows_filtered = rows_filtered + ?, "
            "filtered_reasons = ?, quarantine_reasons = ?, defaulted_reasons = ? "
            "where source = ? and event_day = ?",
            [
                len(loaded),
                sum(open_reasons.values()),
                filtered_n,
                json.dumps(dict(sorted(filtered.items()))),
                json.dumps(open_reasons),
                json.dumps(dict(sorted(defaulted.items()))),
                source,
                day,
            ],
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
    where, args = _filters(source, reason, day)
    with connect(db_path) as con:
        days = con.execute(
            "select distinct q.source, q.event_day, i.status from quarantine q "
            f"join ingestions i using (source, event_day) where {where} order by 1, 2",
            args,
        ).fetchall()
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
