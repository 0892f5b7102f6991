"""`nightrec explain`: registered in flows/cli.py."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from flows import console as cli
from flows.console import HomeOption, day_option


def explain(
    customer: Annotated[str, typer.Option(help="the customer id, as the published rows carry it")],
    date: Annotated[
        dt.date | None,
        day_option(
            "run date D of the partition, inclusive: the run that used events up to the end "
            "of D (default: the newest published partition)"
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Print a customer's published list: why each item (reason and detail) and the model's
    top feature contributions. Reads the partition only."""
    from tasks.explain.published import customer_list, render_customer_list

    settings = cli.settings_for(home, writable=False)
    listing = customer_list(settings.recommendations_dir, customer, date)
    typer.echo(render_customer_list(listing), nl=False)
