"""What every CLI command shares: the consoles, tables, settings, dates and log format.

Light on purpose: `nightrec --help` imports this and typer/rich only, never the pipeline.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tasks.errors import NightrecError

if TYPE_CHECKING:
    from tasks.settings import Settings

console = Console(stderr=True)
# Wide enough for the metric tables when the output is piped to a file.
out = Console(width=None if sys.stdout.isatty() else 160)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="data root (default: $NIGHTREC_HOME or ./var)")
]
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_DATEFMT = "%H:%M:%S"
# Libraries that talk at INFO about their own business; hidden unless --verbose.
CHATTY_LOGGERS = ("great_expectations", "prefect", "httpx", "optuna", "distributed", "numexpr")
DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def configure_logging(verbose: bool = False) -> None:
    """One format for nightrec and the libraries it calls; library chatter below WARNING is
    hidden unless `verbose`. Prefect reads its variables when imported, so set them first."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's telemetry notice and events
    # nightrec's own lines reach the Prefect UI beside Prefect's (a flow run's logs).
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "nightrec")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATEFMT))
    if not verbose:
        handler.addFilter(_quiet)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    nightrec = logging.getLogger("nightrec")
    nightrec.setLevel(logging.DEBUG if verbose else logging.INFO)


def _quiet(record: logging.LogRecord) -> bool:
    """nightrec's own lines, and other libraries' warnings; not a failed flow's trace (the CLI
    prints the one useful line instead), not libraries that set their own loggers to INFO."""
    if record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
        return False
    return record.name.startswith("nightrec") or record.levelno >= logging.WARNING


def settings_for(home: Path | None, writable: bool = True, **overrides: Any) -> Settings:
    """The run's settings, with NIGHTREC_HOME checked writable (every command but a few that
    only read writes a lock there); also tells Prefect, before it is imported, how long its
    ephemeral server may take to start (Prefect's own 20 s is too short on a busy machine)."""
    from tasks.settings import load_settings

    settings = load_settings(home=home, **overrides)
    from tasks.privacy.keys import pseudonym_key

    pseudonym_key(settings.privacy)  # pseudonyms without a key: refused before any work
    if writable:
        check_writable(settings.home)
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        str(settings.ops.prefect_start_timeout_s),
    )
    return settings


class HomeNotWritable(NightrecError):
    hint = "NIGHTREC_HOME must be a folder this user can write to"


def check_writable(home: Path) -> None:
    """Fail with one line, before any work, when `home` cannot be created or written."""
    from tasks.privacy.keys import secure_home

    try:
        secure_home(home)  # created 0700; a group- or world-readable one is tightened
        with tempfile.NamedTemporaryFile(dir=home, prefix=".write-check-"):
            pass
    except OSError as exc:
        where = exc.filename or home
        raise HomeNotWritable(
            f"cannot write NIGHTREC_HOME {home} ({where}: {exc.strerror})"
        ) from exc


def table(title: str, rows: list[dict[str, Any]]) -> Table:
    result = Table(title=title)
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*(fmt(row.get(c, "")) for c in columns))
    return result


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def parse_day(text: str) -> dt.date:
    """`YYYY-MM-DD` as a date; an impossible day says so rather than 'wrong format'."""
    match = DAY.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a date in the form YYYY-MM-DD (2011-08-31)")
    year, month, day = (int(g) for g in match.groups())
    if not 1 <= month <= 12:
        raise typer.BadParameter(f"{text} is not a calendar day: there is no month {month}")
    last = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last:
        name = calendar.month_name[month]
        raise typer.BadParameter(f"{text} is not a calendar day: {name} {year} has {last} days")
    return dt.date(year, month, day)


def day_option(help_text: str, name: str | None = None) -> Any:
    """A typer option holding a `dt.date` parsed by `parse_day`."""
    names = [name] if name else []
    return typer.Option(*names, parser=parse_day, metavar="YYYY-MM-DD", help=help_text)
