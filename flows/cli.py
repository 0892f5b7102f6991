"""`nightrec`: the command line. Errors are one line plus a hint, never a bare trace."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from flows.console import (
    HomeOption,
    configure_logging,
    console,
    day_option,
    out,
    settings_for,
    table,
)
from flows.explain_cli import explain
from flows.ops_cli import backfill_via_deployment_cli, serve, server
from flows.privacy_cli import forget, pseudonym
from flows.safety_cli import drill, quarantine_app
from tasks.constants import OWNER_ONLY_UMASK
from tasks.errors import DegradedRun, NightrecError, PrefectStartTimeout

if TYPE_CHECKING:
    from tasks.settings import Settings

app = typer.Typer(
    help="nightrec: nightly recommendations from shop event logs (DuckDB + Prefect).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(
    help="Registered ranking models: list, promote, roll back.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
app.add_typer(quarantine_app, name="quarantine")
app.command()(drill)
app.command()(explain)
app.command()(server)
app.command()(serve)
app.command()(forget)
app.command()(pseudonym)


@app.callback()
def _global_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="also show libraries' INFO logs and traces")
    ] = False,
) -> None:
    configure_logging(verbose)


def _metricstable(validation: dict[str, Any]) -> Table:
    k = validation["k"]
    names = ("ndcg", "recall", "map", "hitrate", "precision")
    rows = [
        {"model": model, **{f"{n}@{k}": metrics[f"{n}@{k}"] for n in names}}
        for model, metrics in validation["metrics"].items()
    ]
    title = (
        f"Validation: as-of {validation['as_of'][:10]}, H={validation['horizon_days']} days, "
        f"K={k}, {validation['users']:,} users"
    )
    return table(title, rows)


@app.command()
def demo(
    home: HomeOption = None,
    shop: Annotated[
        str,
        typer.Option(
            help="web: views, carts and purchases in sessions; grocery: a chain's weekly "
            "baskets (purchases only, long-tail catalog with brands, some items unpriced)"
        ),
    ] = "web",
    days: Annotated[int, typer.Option(help="days of synthetic history")] = 120,
    customers: Annotated[
        int | None, typer.Option(help="synthetic customers (default: web 300, grocery 300)")
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="synthetic catalog size (default: web 250, grocery 5000)")
    ] = None,
    backfill_days: Annotated[int, typer.Option(help="last days to run nightly")] = 3,
    seed: Annotated[int, typer.Option(help="seed of the synthetic shop")] = 7,
) -> None:
    """Generate a synthetic shop, ingest it and run the nightly flow over its last days."""
    from rich.progress import Progress

    from flows.demo import run_demo
    from tasks.synth.shop import GroceryShopConfig, SynthShopConfig

    if shop not in ("web", "grocery"):
        raise typer.BadParameter(f"unknown shop {shop!r}: use web or grocery", param_hint="--shop")
    settings = settings_for(home)
    customers = 300 if customers is None else customers
    if shop == "grocery":
        items = 5_000 if items is None else items
        config = GroceryShopConfig(n_customers=customers, n_items=items, days=days, seed=seed)
    else:
        items = 250 if items is None else items
        config = SynthShopConfig(n_customers=customers, n_items=items, days=days, seed=seed)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("ingesting landing files", total=None)
        result = run_demo(
            settings,
            config,
            backfill_days,
            on_file=lambda i, n, _r: progress.update(bar, completed=i, total=n),
        )
    out.print(table("Nightly runs", result.backfill))
    out.print(
        f"Recommendations: {settings.recommendations_dir.resolve()}/run_date={result.last_day}/"
    )
    if result.validation:
        out.print(_metricstable(result.validation))


@app.command()
def ingest(
    source: Annotated[str, typer.Option(help="source adapter: canonical | online-retail")],
    path: Annotated[Path, typer.Option(help="folder of YYYY-MM-DD.<ext> files, or one file")],
    home: HomeOption = None,
    start: Annotated[dt.date | None, day_option("first day")] = None,
    end: Annotated[dt.date | None, day_option("last day")] = None,
    replace: Annotated[
        bool, typer.Option(help="reload days already loaded from other files")
    ] = False,
    columns: Annotated[
        Path | None,
        typer.Option(
            help="column mapping YAML (canonical name: export column); "
            "default: nightrec_columns.yml beside the landing files"
        ),
    ] = None,
) -> None:
    """Load landing files (and a catalog file beside them) into the store (validated; bad
    rows go to quarantine)."""
    from rich.progress import Progress

    from tasks.ingest.load import ingest_landing

    settings = settings_for(home)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"ingesting {path}", total=None)

        def on_file(done: int, total: int, result: Any) -> None:
            progress.update(bar, completed=done, total=total)
            progress.console.print(result.summary(), highlight=False)

        results = ingest_landing(
            settings.db_path,
            source,
            path,
            max_bad_share=settings.max_bad_share,
            start=start,
            end=end,
            replace=replace,
            on_file=on_file,
            chunk_bytes=settings.safety.chunk_bytes,
            published_root=settings.recommendations_dir,
            fault=settings.safety.fault,
            memory_limit_mib=settings.safety.ingest_memory_mib,
            columns_file=columns,
            privacy=settings.privacy,
        )
    stale = sorted({d for r in results for d in r.stale_runs})
    if stale:
        console.print(f"stale published run date(s), rerun by `nightrec backfill`: {stale}")
    totals = {
        key: sum(getattr(r, key) for r in results)
        for key in ("rows_in", "rows_loaded", "rows_quarantined", "rows_filtered")
    }
    out.print(table(f"Ingested {len(results)} file(s) from {source}", [totals]))


WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="score shards of customers on a local Dask cluster of N worker processes "
        "(default: settings.dask.workers, 0 = in this process)",
    ),
]
DaskAddressOption = Annotated[
    str | None,
    typer.Option(
        "--dask-address",
        help="score shards on the Dask scheduler at this address (default: "
        "NIGHTREC_DASK__ADDRESS); workers must see NIGHTREC_HOME's work folder",
    ),
]
AllowDegradedOption = Annotated[
    bool,
    typer.Option(
        "--allow-degraded",
        help="exit 0 even when a fallback served (default: settings.allow_degraded)",
    ),
]


def _preflight(settings: Settings, run_date: dt.date) -> None:
    """A run with nothing to recommend from fails here, before Prefect starts; with a landing
    folder the flow checks again after ingesting the day."""
    from tasks.ops.inputs import check_input, read_input_state

    state = read_input_state(settings.db_path, run_date)
    safety = settings.safety
    check_input(state, safety.max_input_age_days, safety.allow_stale_input, str(settings.db_path))


def _newest_event_day(settings: Settings, why: str) -> dt.date:
    from tasks.ops.inputs import newest_event_day

    day = newest_event_day(settings.db_path)
    console.print(f"{why} not given: using the store's newest event day, {day}")
    return day


@app.command()
def run(
    date: Annotated[
        dt.date | None,
        day_option("run date D, inclusive: events up to the end of D (default: newest event day)"),
    ] = None,
    home: HomeOption = None,
    landing: Annotated[Path | None, typer.Option(help="landing folder to ingest D from")] = None,
    source: Annotated[str | None, typer.Option(help="source adapter of the landing files")] = None,
    retrain: Annotated[
        bool | None, typer.Option("--retrain/--no-retrain", help="force or forbid retraining")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="neural ranker device: auto, cpu or cuda")
    ] = None,
    allow_degraded: AllowDegradedOption = False,
    workers: WorkersOption = None,
    dask_address: DaskAddressOption = None,
) -> None:
    """Run the nightly flow for one date (uses events before D + 1 day)."""
    settings = settings_for(home, landing_dir=landing, source=source)
    from flows.nightly import NightlyParams, nightly_flow

    params = NightlyParams(  # checks the options before anything runs
        run_date=date,
        retrain=retrain,
        landing_dir=str(settings.landing_dir) if settings.landing_dir else None,
        source=settings.source,
        home=str(settings.home),
        device=device,
        allow_degraded=allow_degraded or None,
        workers=workers,
        dask_address=dask_address,
    )
    if date is None:
        params = params.model_copy(update={"run_date": _newest_event_day(settings, "--date")})
    if settings.landing_dir is None:
        _preflight(settings, params.run_date)
    try:
        manifest = nightly_flow(params)
    except DegradedRun as exc:
        _print_run(exc.result)
        raise
    _print_run(manifest)


def _print_run(manifest: dict[str, Any]) -> None:
    keys = ("run_date", "rows", "users", "model_version", "retrained", "status")
    row = {k: manifest.get(k, "") for k in keys}
    health = manifest.get("health") or {}
    row["health"] = health.get("status", "off")
    out.print(table("Nightly run", [row]))
    for warning in health.get("warnings", []):
        out.print(f"health warning: {warning}", highlight=False)


@app.command()
def backfill(
    start: Annotated[dt.date, day_option("first run date")],
    end: Annotated[dt.date, day_option("last run date")],
    home: HomeOption = None,
    landing: Annotated[
        Path | None, typer.Option(help="landing folder to ingest each day from")
    ] = None,
    source: Annotated[str | None, typer.Option(help="source adapter of the landing files")] = None,
    force: Annotated[bool, typer.Option(help="rerun days that are already complete")] = False,
    via_deployment: Annotated[
        bool,
        typer.Option(
            "--via-deployment",
            help="one flow run per date through the served nightly deployment (`nightrec serve`)",
        ),
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="dates run at once with --via-deployment (retraining dates alone)"
        ),
    ] = None,
    allow_degraded: AllowDegradedOption = False,
    workers: WorkersOption = None,
    dask_address: DaskAddressOption = None,
) -> None:
    """Run the nightly flow for every day from START to END (both inclusive), oldest first;
    resumable."""
    from flows.backfill import BackfillParams, backfill_flow

    settings = settings_for(home, landing_dir=landing, source=source)
    if via_deployment:
        if concurrency is not None:
            settings.ops.backfill_concurrency = concurrency
        backfill_via_deployment_cli(settings, BackfillParams(start=start, end=end), force)
        return
    params = BackfillParams(
        start=start,
        end=end,
        force=force,
        landing_dir=str(settings.landing_dir) if settings.landing_dir else None,
        source=settings.source,
        home=str(settings.home),
        allow_degraded=allow_degraded or None,
        workers=workers,
        dask_address=dask_address,
    )
    try:
        rows = backfill_flow(params)
    except DegradedRun as exc:
        out.print(table(f"Backfill {start:%Y-%m-%d}..{end:%Y-%m-%d}", exc.result))
        raise
    out.print(table(f"Backfill {start:%Y-%m-%d}..{end:%Y-%m-%d}", rows))


@app.command()
def evaluate(
    as_of: Annotated[
        dt.date | None,
        day_option(
            "as-of date T, exclusive: train before T, truth in [T, T+H) "
            "(default: the last T whose truth window the store holds)",
            "--as-of",
        ),
    ] = None,
    horizon: Annotated[int, typer.Option(help="truth window H in days")] = 30,
    home: HomeOption = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="model kind(s): lightgbm, neural, blend (default: all three)"),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="neural ranker device: auto, cpu or cuda")
    ] = None,
    landing: Annotated[
        Path | None,
        typer.Option(
            help="the store's landing files: evaluate the protocol's user set (order lines, "
            "fee lines included) instead of customers with purchase events"
        ),
    ] = None,
    source: Annotated[str | None, typer.Option(help="source adapter of the landing files")] = None,
) -> None:
    """Backtest at T: the rankers (LightGBM, neural, blend) beside every baseline."""
    from flows.evaluate import EvaluateParams, evaluate_flow

    settings = settings_for(home, landing_dir=landing, source=source)
    if as_of is None:
        as_of = _newest_event_day(settings, "--as-of") + dt.timedelta(days=1 - horizon)
    choice = {"kinds": kind} if kind else {}
    result = evaluate_flow(
        EvaluateParams(
            as_of=as_of,
            horizon_days=horizon,
            home=str(settings.home),
            device=device,
            landing_dir=str(settings.landing_dir) if settings.landing_dir else None,
            source=settings.source,
            **choice,
        )
    )
    for k in (10, 20):
        names = (
            "ndcg",
            "recall",
            "map",
            "hitrate",
            "precision",
            "coverage",
            "novelty",
            "diversity",
        )
        rows = [
            {"method": method, **{f"{n}@{k}": metrics[f"{n}@{k}"] for n in names}}
            for method, metrics in result["metrics"].items()
        ]
        out.print(
            table(
                f"as-of {as_of:%Y-%m-%d}, H={horizon}, K={k}, {result['users']:,} users "
                f"({result['user_set']})",
                rows,
            )
        )
    diff = result["ndcg@10_difference"]
    out.print(
        f"NDCG@10 {result['best_model']} - {result['best_baseline']}: {diff['mean_diff']:+.4f} "
        f"(95% CI {diff['low']:+.4f} .. {diff['high']:+.4f})"
    )
    out.print(f"Report: {result['report']}")


@app.command()
def tune(
    study: Annotated[str, typer.Option(help="study name; the same name again resumes it")],
    model: Annotated[
        str,
        typer.Option(
            help="lightgbm | neural | blend (blend searches its network; its LightGBM keeps "
            "the champion's parameters)"
        ),
    ] = "lightgbm",
    search: Annotated[str, typer.Option(help="grid | bayes")] = "bayes",
    trials: Annotated[int, typer.Option(help="finished trials the study should hold")] = 30,
    timeout: Annotated[
        float | None, typer.Option(help="seconds after which no new trial starts")
    ] = None,
    as_of: Annotated[
        dt.date | None,
        day_option(
            "tune on windows before T, exclusive (default: the day after the newest event)",
            "--as-of",
        ),
    ] = None,
    space: Annotated[
        Path | None, typer.Option(help="search space YAML (default: tasks/tune/spaces/MODEL.yml)")
    ] = None,
    parallel: Annotated[int | None, typer.Option(help="trials at once (tune.parallel)")] = None,
    register: Annotated[
        bool, typer.Option(help="register the best trial's model and run the promotion gate")
    ] = True,
    home: HomeOption = None,
) -> None:
    """Search ranker hyperparameters on the validation windows before T; resumable."""
    settings = settings_for(home)  # first: it sets Prefect's start-up wait before the import
    from optuna import logging as optuna_logging
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.tune import TuneParams, tune_flow
    from tasks.tune.objectives import OBJECTIVES
    from tasks.tune.space import load_space

    # An unknown model or a space it cannot search fails before Prefect starts.
    objective = OBJECTIVES.get(model)
    objective.check_space(load_space(space or objective.default_space()))
    if as_of is None:
        as_of = _newest_event_day(settings, "--as-of") + dt.timedelta(days=1)
    optuna_logging.set_verbosity(optuna_logging.WARNING)  # the CLI prints its own summary
    params = TuneParams(
        study=study,
        model=model,
        search=search,
        trials=trials,
        timeout_s=timeout,
        as_of=as_of,
        space=str(space) if space else None,
        register_best=register,
        parallel=parallel,
        home=str(settings.home),
    )
    runner = ThreadPoolTaskRunner(max_workers=parallel or settings.tune.parallel)
    info = tune_flow.with_options(task_runner=runner)(params)
    counts = ", ".join(f"{n} {s.lower()}" for s, n in info["trials"].items())
    best = info.get("best") or {}
    row = {
        "study": study,
        "trials": counts,
        "best trial": best.get("trial", ""),
        "best value": best.get("value", ""),
        "default value": info.get("default_value") or "",
        "stopped": info["stopped_because"],
    }
    out.print(table(f"Study {study} ({model}, {search})", [row]))
    if best:
        out.print(f"Best parameters: {best['params']}")
    if info.get("registered"):
        reg = info["registered"]
        verdict = "promoted" if reg["promoted"] else "not promoted"
        out.print(f"Registered {reg['version']}: {verdict} ({reg['reason']})")
    out.print(f"Report: {info['folder']}/report")


@app.command()
def monitor(
    days: Annotated[int, typer.Option(min=1, help="how many of the newest run dates to show")] = 30,
    until: Annotated[
        dt.date | None,
        day_option("last run date shown, inclusive (default: the newest measured)", "--until"),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Run health over the last runs: one row per run date, each check's measure marked W
    (warned, published) or F (failed, not published); '-' where a check was skipped."""
    from tasks.monitor.trends import SHORT, last_runs, newest_alarms, trend_rows

    settings = settings_for(home, writable=False)
    history = last_runs(settings.db_path, until, days)
    if history.height == 0:
        out.print("no run health stored yet: run `nightrec run` or `nightrec backfill` first")
        return
    rows = trend_rows(history, short=True)
    out.print(table(f"Run health, {len(rows)} run(s) in {settings.db_path}", rows))
    out.print(
        "measures (README, Run health): " + ", ".join(f"{s}={n}" for n, s in SHORT.items()),
        highlight=False,
    )
    for line in newest_alarms(history):
        out.print(line, highlight=False)


@models_app.command("list")
def models_list(home: HomeOption = None) -> None:
    """Registered models, oldest first; the champion is marked."""
    from tasks.rank import registry

    settings = settings_for(home, writable=False)
    champion = registry.champion_state(settings.models_dir)["champion"]
    rows = []
    for record in registry.list_models(settings.models_dir):
        validation = record.meta.get("validation", {})
        metrics = validation.get("metrics", {}).get(validation.get("model_key", "lightgbm"), {})
        rows.append(
            {
                "version": record.version,
                "champion": "*" if record.version == champion else "",
                # retired: trained on data of customers erased since (`nightrec forget`)
                "serves": "no (erased data)" if record.retired else "yes",
                "kind": record.meta.get("model_kind", "lightgbm"),
                "as_of": f"{record.as_of:%Y-%m-%d}",
                "valid ndcg@10": metrics.get(f"ndcg@{settings.k}", float("nan")),
                "code": record.meta.get("code_version", ""),
            }
        )
    out.print(
        table(f"Models in {settings.models_dir}", rows) if rows else "no models registered yet"
    )


@models_app.command("promote")
def models_promote(version: str, home: HomeOption = None) -> None:
    """Make VERSION the champion."""
    from tasks.rank import registry

    record = registry.promote(settings_for(home).models_dir, version)
    out.print(f"champion is now {record.version}")


@models_app.command("rollback")
def models_rollback(home: HomeOption = None) -> None:
    """Restore the previous champion."""
    from tasks.rank import registry

    record = registry.rollback(settings_for(home).models_dir)
    out.print(f"champion rolled back to {record.version}")


PREFECT_START_FAILURE = "Timed out while attempting to connect to ephemeral Prefect API server"


def _fail(message: str, hint: str, code: int) -> None:
    # Plain writes: a terminal-width wrap would split the one line in two.
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    sys.stderr.write(f"error: {first}\n")
    sys.stderr.write(f"hint: {hint}\n")
    sys.exit(code)


def _validation_message(exc: Exception) -> str:
    """Name the field: "device: Input should be ..." (pydantic's ValidationError)."""
    return "; ".join(
        ": ".join([".".join(map(str, e["loc"])), e["msg"]]) if e["loc"] else e["msg"]
        for e in exc.errors()  # type: ignore[attr-defined]
    )


def main() -> None:
    """The error boundary: a user error is two lines (error, hint) and exit 2, a degraded run
    exit 3; anything else is a bug and keeps its trace. Imports nothing heavy. What the
    command creates is its owner's only (umask 077: files 0600, folders 0700)."""
    os.umask(OWNER_ONLY_UMASK)
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        _fail("aborted", "run the command again", 130)
    except typer.TyperException as exc:  # click's usage errors: bad option, bad value
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _fail(message, "see `nightrec COMMAND --help`", getattr(exc, "exit_code", 2))
    except NightrecError as exc:
        _fail(str(exc) or type(exc).__name__, exc.hint, exc.exit_code)
    except Exception as exc:
        if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
            _fail(_validation_message(exc), "check the command's options or settings", 2)
        if PREFECT_START_FAILURE in str(exc):
            _fail(str(PrefectStartTimeout(str(exc))), PrefectStartTimeout.hint, 2)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
