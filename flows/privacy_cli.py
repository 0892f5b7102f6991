"""`nightrec forget` and `nightrec pseudonym`: customers' privacy. Registered in flows/cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows import console as cli
from flows.console import HomeOption

CustomerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--customer", help="a customer id as the shop knows it (not a pseudonym); repeatable"
    ),
]


def forget(
    customer: CustomerOption = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="a file of customer ids, one per line (# comments)"),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Erase customers from everything under NIGHTREC_HOME: store (events, quarantined raw
    rows), leftovers, tuning caches, published partitions (rewritten); retire the models that
    saw them; log a keyed hash of each id; keep them out of later ingestions. An id the store
    does not know is recorded too (0 rows): its later data is filtered."""
    from tasks.ops.forget import erased_summary, forget, read_ids

    settings = cli.settings_for(home)
    ids = read_ids(customer or [], file)
    result = forget(settings, ids)
    cli.out.print(cli.table(f"Erased (request {result.request_id})", erased_summary(result)))
    unknown = [c for c in ids if result.rows(c) == 0]
    if unknown:
        cli.console.print(
            f"{len(unknown)} of {len(ids)} id(s) had no rows (not in the store or the published "
            "lists); they are on the erasure list, so their later data is filtered"
        )
    for place, n in sorted(result.files.items()):
        cli.console.print(f"removed {n} {place}")
    if result.models_retired:
        cli.console.print(
            f"retired {len(result.models_retired)} model(s) trained on their data; "
            "the next run retrains before serving"
        )
    if result.store_bytes:
        before, after = result.store_bytes
        cli.console.print(f"store rewritten without freed blocks: {before:,} -> {after:,} bytes")
    short = (
        f"; {result.not_scanned} id(s) under 8 characters not scanned (they match inside "
        "unrelated values)"
        if result.not_scanned
        else ""
    )
    cli.console.print(
        f"byte scan of {settings.home}: no file holds any of {result.byte_scanned} "
        f"id(s)/pseudonym(s){short}"
    )


def pseudonym(customer: CustomerOption = None, home: HomeOption = None) -> None:
    """Print the pseudonym of each customer id (privacy.pseudonymize; needs
    NIGHTREC_PRIVACY__KEY): how the shop maps its ids to the published rows."""
    from tasks.privacy.keys import MissingKey, configured_key

    settings = cli.settings_for(home, writable=False)
    key = configured_key(settings.privacy)
    if key is None:
        raise MissingKey("no privacy key is set (NIGHTREC_PRIVACY__KEY)")
    if not customer:
        raise typer.BadParameter("give at least one --customer ID", param_hint="--customer")
    cli.out.print(
        cli.table("Pseudonyms", [{"customer": c, "pseudonym": key.pseudonym(c)} for c in customer])
    )
