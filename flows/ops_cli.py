"""`nightrec server`, `nightrec serve` and `nightrec backfill --via-deployment`: the Prefect
server, the served deployments, and backfills through them. Registered in flows/cli.py."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import typer

from flows import console as cli
from flows.console import HomeOption

if TYPE_CHECKING:
    from flows.backfill import BackfillParams
    from tasks.settings import Settings


def backfill_via_deployment_cli(settings: Settings, params: BackfillParams, force: bool) -> None:
    """`nightrec backfill --via-deployment`: progress lines, the table, exit 1 on failures."""
    from flows.prefect_api import use_api

    url = use_api(settings)
    from flows.deployment_backfill import backfill_via_deployment

    days = params.days()
    done = 0

    def on_done(row: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        cli.console.print(
            f"[{done}/{len(days)}] {row['run_date']}: {row['state']} ({row['seconds']} s)"
        )

    cli.console.print(f"backfill of {len(days)} date(s) through {url}")
    rows = backfill_via_deployment(settings, days, force, on_done)
    cli.out.print(
        cli.table(f"Backfill {params.start}..{params.end} via the nightly deployment", rows)
    )
    failed = [r["run_date"] for r in rows if r["state"] not in ("Completed", "skipped (complete)")]
    if failed:
        sys.stderr.write(f"error: {len(failed)} date(s) did not complete: {', '.join(failed)}\n")
        sys.stderr.write("hint: see the runs in the Prefect UI, then rerun the same backfill\n")
        raise typer.Exit(1)


def server(home: HomeOption = None) -> None:
    """Start the Prefect server and UI on this host (127.0.0.1:4200 by default, no analytics)."""
    from flows.prefect_api import server_command

    settings = cli.settings_for(home)
    argv, env = server_command(settings)
    cli.console.print(f"Prefect UI on http://{settings.ops.server_host}:{settings.ops.server_port}")
    os.execve(argv[0], argv, env)  # the server owns the terminal from here; Ctrl-C stops it


def serve(home: HomeOption = None) -> None:
    """Serve nightrec's deployments (nightly schedule, manual runs, backfill); no worker needed."""
    from flows.prefect_api import use_api

    settings = cli.settings_for(home)
    url = use_api(settings)
    # Served runs log to the UI: nightrec's own loggers too, at INFO.
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "nightrec")
    from deployments.serve import serve_all

    cli.console.print(
        f"serving the nightly ({settings.ops.nightly_cron}, {settings.ops.timezone}), backfill "
        f"and weekly tuning deployments at {url}; Ctrl-C stops"
    )
    serve_all(settings)
