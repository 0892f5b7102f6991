"""`nightrec quarantine list|replay` and `nightrec drill`: registered in flows/cli.py."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path
from typing import Annotated

import typer

from flows import console as cli
from flows.console import HomeOption, day_option

quarantine_app = typer.Typer(
    help="Quarantined rows: list them by reason, replay them after a fix.", no_args_is_help=True
)

DayOption = Annotated[dt.date | None, day_option("only this event day", "--day")]
ReasonOption = Annotated[str | None, typer.Option(help="only this reason (as `list` shows it)")]
SourceOption = Annotated[str | None, typer.Option(help="only this source adapter")]


@quarantine_app.command("list")
def quarantine_list(
    home: HomeOption = None,
    source: SourceOption = None,
    reason: ReasonOption = None,
    day: DayOption = None,
    rows: Annotated[int, typer.Option(help="also show this many raw rows")] = 0,
) -> None:
    """Open quarantined rows counted by source, day and reason (and a few raw rows)."""
    from tasks.ingest.quarantine import quarantine_rows, quarantine_summary

    settings = cli.settings_for(home)
    filters = {"source": source, "reason": reason, "day": day}
    summary = quarantine_summary(settings.db_path, **filters)
    if not summary:
        cli.out.print("no quarantined rows")
        return
    cli.out.print(cli.table(f"Quarantine in {settings.db_path}", summary))
    if rows:
        cli.out.print(cli.table("Rows", quarantine_rows(settings.db_path, **filters, limit=rows)))


@quarantine_app.command("replay")
def quarantine_replay(
    home: HomeOption = None,
    source: SourceOption = None,
    reason: ReasonOption = None,
    day: DayOption = None,
) -> None:
    """Re-validate quarantined rows (after a fix of the contract or the adapter) and load
    those that now pass; the day's counts stay exact and published days are flagged stale."""
    from tasks.ingest.quarantine import replay_quarantine

    settings = cli.settings_for(home)
    results = replay_quarantine(
        settings.db_path,
        source=source,
        reason=reason,
        day=day,
        published_root=settings.recommendations_dir,
    )
    rows = [
        {
            "source": r.source,
            "day": r.day.isoformat(),
            "replayed": r.replayed,
            "loaded": r.loaded,
            "filtered": r.filtered,
            "still quarantined": r.still_quarantined,
            "stale runs": ", ".join(r.stale_runs),
        }
        for r in results
    ]
    cli.out.print(cli.table("Quarantine replay", rows) if rows else "nothing to replay")


def drill(
    home: Annotated[
        Path | None, typer.Option("--home", help="scratch root for the drill (default: a temp dir)")
    ] = None,
    scenario: Annotated[
        list[str] | None, typer.Option(help="run only these scenarios (repeatable)")
    ] = None,
    record: Annotated[
        Path | None, typer.Option(help="also write the table as Markdown to this file")
    ] = None,
) -> None:
    """Scripted failure scenarios, each in a scratch home; a table of expected vs observed."""
    cli.settings_for(None)  # Prefect's start-up wait, set before Prefect is imported
    from flows.drill import run_drill, to_markdown

    rows = run_drill(home, scenario, on_done=lambda row: cli.console.print(row.line()))
    cli.out.print(cli.table("Drill", [r.as_row() for r in rows]))
    if record is not None:
        title = (
            f"# nightrec drill\n\n`nightrec drill --record {record}` on "
            f"{dt.date.today()}, {platform.platform()}, {os.cpu_count()} cores "
            "(shared machine: seconds are noisy). Each scenario runs in its own scratch home "
            "on the tiny synthetic shop of the flow tests (flows/drill.py)."
        )
        record.write_text(to_markdown(rows, title))
        cli.out.print(f"recorded in {record}")
    if not all(r.passed for r in rows):
        raise typer.Exit(1)
