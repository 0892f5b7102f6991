"""`nightrec`: the command line. Errors are one line plus a hint, never a bare trace."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from flows.ops_cli import backfill_via_deployment_cli, serve, server
from flows.safety_cli import drill, quarantine_app

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
app.command()(server)
app.command()(serve)
console = Console(stderr=True)
# Wide enough for the metric tables when the output is piped to a file.
out = Console(width=None if sys.stdout.isatty() else 160)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="data root (default: $NIGHTREC_HOME or ./var)")
]


def _configure_logging() -> None:
    """Prefect logs every task state at INFO; the CLI shows its own progress instead."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    logger = logging.getLogger("nightrec")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _settings(home: Path | None, **overrides: Any):
    from tasks.settings import load_settings

    return load_settings(home=home, **overrides)


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_fmt(row.get(c, "")) for c in columns))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _metrics_table(validation: dict[str, Any]) -> Table:
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
    return _table(title, rows)


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
    settings = _settings(home)
    if shop == "grocery":
        config = GroceryShopConfig(
            n_customers=customers or 300, n_items=items or 5_000, days=days, seed=seed
        )
    else:
        config = SynthShopConfig(
            n_customers=customers or 300, n_items=items or 250, days=days, seed=seed
        )
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("ingesting landing files", total=None)
        result = run_demo(
            settings,
            config,
            backfill_days,
            on_file=lambda i, n, _r: progress.update(bar, completed=i, total=n),
        )
    out.print(_table("Nightly runs", result.backfill))
    out.print(
        f"Recommendations: {settings.recommendations_dir.resolve()}/run_date={result.last_day}/"
    )
    if result.validation:
        out.print(_metrics_table(result.validation))


@app.command()
def ingest(
    source: Annotated[str, typer.Option(help="source adapter: canonical | online-retail")],
    path: Annotated[Path, typer.Option(help="folder of YYYY-MM-DD.<ext> files, or one file")],
    home: HomeOption = None,
    start: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="first day")
    ] = None,
    end: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="last day")] = None,
    replace: Annotated[
        bool, typer.Option(help="reload days already loaded from other files")
    ] = False,
) -> None:
    """Load landing files into the store (validated; bad rows go to quarantine)."""
    from rich.progress import Progress

    from tasks.ingest.load import ingest_landing

    settings = _settings(home)
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
            start=start.date() if start else None,
            end=end.date() if end else None,
            replace=replace,
            on_file=on_file,
            chunk_bytes=settings.safety.chunk_bytes,
            published_root=settings.recommendations_dir,
            fault=settings.safety.fault,
            memory_limit_mib=settings.safety.ingest_memory_mib,
        )
    stale = sorted({d for r in results for d in r.stale_runs})
    if stale:
        console.print(f"stale published run date(s), rerun by `nightrec backfill`: {stale}")
    totals = {
        key: sum(getattr(r, key) for r in results)
        for key in ("rows_in", "rows_loaded", "rows_quarantined", "rows_filtered")
    }
    out.print(_table(f"Ingested {len(results)} file(s) from {source}", [totals]))


@app.command()
def run(
    date: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="run date D")],
    home: HomeOption = None,
    landing: Annotated[Path | None, typer.Option(help="landing folder to ingest D from")] = None,
    source: Annotated[str | None, typer.Option(help="source adapter of the landing files")] = None,
    retrain: Annotated[
        bool | None, typer.Option("--retrain/--no-retrain", help="force or forbid retraining")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="neural ranker device: auto, cpu or cuda")
    ] = None,
) -> None:
    """Run the nightly flow for one date (uses events before D + 1 day)."""
    from flows.nightly import NightlyParams, nightly_flow

    settings = _settings(home, landing_dir=landing, source=source)
    manifest = nightly_flow(
        NightlyParams(
            run_date=date.date(),
            retrain=retrain,
            landing_dir=str(settings.landing_dir) if settings.landing_dir else None,
            source=settings.source,
            home=str(settings.home),
            device=device,
        )
    )
    summary = {k: manifest[k] for k in ("run_date", "rows", "users", "model_version", "retrained")}
    out.print(_table("Nightly run", [summary]))


@app.command()
def backfill(
    start: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="first run date")],
    end: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="last run date")],
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
) -> None:
    """Run the nightly flow for every day from START to END, oldest first; resumable."""
    from flows.backfill import BackfillParams, backfill_flow

    settings = _settings(home, landing_dir=landing, source=source)
    if via_deployment:
        if concurrency is not None:
            settings.ops.backfill_concurrency = concurrency
        backfill_via_deployment_cli(
            settings, BackfillParams(start=start.date(), end=end.date()), force
        )
        return
    rows = backfill_flow(
        BackfillParams(
            start=start.date(),
            end=end.date(),
            force=force,
            landing_dir=str(settings.landing_dir) if settings.landing_dir else None,
            source=settings.source,
            home=str(settings.home),
        )
    )
    out.print(_table(f"Backfill {start:%Y-%m-%d}..{end:%Y-%m-%d}", rows))


@app.command()
def evaluate(
    as_of: Annotated[
        dt.datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="as-of date T")
    ],
    horizon: Annotated[int, typer.Option(help="truth window H in days")] = 30,
    home: HomeOption = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="model kind(s): lightgbm, neural, blend (default: all three)"),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="neural ranker device: auto, cpu or cuda")
    ] = None,
) -> None:
    """Backtest at T: the rankers (LightGBM, neural, blend) beside every baseline."""
    from flows.evaluate import EvaluateParams, evaluate_flow

    settings = _settings(home)
    choice = {"kinds": kind} if kind else {}
    result = evaluate_flow(
        EvaluateParams(
            as_of=as_of.date(),
            horizon_days=horizon,
            home=str(settings.home),
            device=device,
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
            _table(f"as-of {as_of:%Y-%m-%d}, H={horizon}, K={k}, {result['users']:,} users", rows)
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
        dt.datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="tune on windows before T (today)"),
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
    from optuna import logging as optuna_logging
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.tune import TuneParams, tune_flow
    from tasks.tune.objective import OBJECTIVES
    from tasks.tune.space import load_space

    # An unknown model or a space it cannot search fails before Prefect starts.
    objective = OBJECTIVES.get(model)
    objective.check_space(load_space(space or objective.default_space()))
    optuna_logging.set_verbosity(optuna_logging.WARNING)  # the CLI prints its own summary
    settings = _settings(home)
    params = TuneParams(
        study=study,
        model=model,
        search=search,
        trials=trials,
        timeout_s=timeout,
        as_of=as_of.date() if as_of else None,
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
    out.print(_table(f"Study {study} ({model}, {search})", [row]))
    if best:
        out.print(f"Best parameters: {best['params']}")
    if info.get("registered"):
        reg = info["registered"]
        verdict = "promoted" if reg["promoted"] else "not promoted"
        out.print(f"Registered {reg['version']}: {verdict} ({reg['reason']})")
    out.print(f"Report: {info['folder']}/report")


@models_app.command("list")
def models_list(home: HomeOption = None) -> None:
    """Registered models, oldest first; the champion is marked."""
    from tasks.rank import registry

    settings = _settings(home)
    champion = registry.champion_state(settings.models_dir)["champion"]
    rows = []
    for record in registry.list_models(settings.models_dir):
        validation = record.meta.get("validation", {})
        metrics = validation.get("metrics", {}).get(validation.get("model_key", "lightgbm"), {})
        rows.append(
            {
                "version": record.version,
                "champion": "*" if record.version == champion else "",
                "kind": record.meta.get("model_kind", "lightgbm"),
                "cutoff": record.meta["cutoff"][:10],
                "valid ndcg@10": metrics.get(f"ndcg@{settings.k}", float("nan")),
                "code": record.meta.get("code_version", ""),
            }
        )
    out.print(
        _table(f"Models in {settings.models_dir}", rows) if rows else "no models registered yet"
    )


@models_app.command("promote")
def models_promote(version: str, home: HomeOption = None) -> None:
    """Make VERSION the champion."""
    from tasks.rank import registry

    record = registry.promote(_settings(home).models_dir, version)
    out.print(f"champion is now {record.version}")


@models_app.command("rollback")
def models_rollback(home: HomeOption = None) -> None:
    """Restore the previous champion."""
    from tasks.rank import registry

    record = registry.rollback(_settings(home).models_dir)
    out.print(f"champion rolled back to {record.version}")


def _known_errors() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError

    from flows.deployment_backfill import DeploymentMissing
    from flows.prefect_api import ApiUnreachable
    from tasks.ingest.landing import IngestError
    from tasks.locks import LockBusy
    from tasks.rank.neural.train import DeviceError
    from tasks.rank.registry import RegistryError
    from tasks.store import StoreError
    from tasks.tune.errors import TUNE_ERRORS
    from tasks.validate.contracts import ContractError
    from tasks.validate.run_report import ContractViolation

    return (
        IngestError,
        StoreError,
        RegistryError,
        ContractError,
        ValidationError,
        LockBusy,
        ApiUnreachable,
        DeploymentMissing,
        DeviceError,
        ContractViolation,
        *TUNE_ERRORS,
    )


HINTS = {
    "IngestError": "fix the file (or pass --replace) and run the command again",
    "BadShareError": "inspect quarantined rows, fix the file, ingest again",
    "StoreError": "check NIGHTREC_HOME and that no other nightrec run holds the store",
    "RegistryError": "see `nightrec models list`",
    "ContractError": "fix the contract under data_contracts/",
    "ValidationError": "check the command's options (`nightrec COMMAND --help`)",
    "RunInProgress": "wait for that run to finish; its output is the one that lands",
    "LockBusy": "wait for the other nightrec process to finish",
    "ApiUnreachable": "`nightrec server` in another terminal, then `nightrec serve`",
    "DeploymentMissing": "`nightrec serve` registers the deployments",
    "DeviceError": "use --device auto or cpu (or NIGHTREC_NEURAL__DEVICE=auto)",
    "ContractViolation": "read the validation report named above; yesterday's output is intact",
    "TuneError": "see `nightrec tune --help`",
    "SpaceError": "fix the search space YAML (see tasks/tune/spaces/)",
    "ObjectiveUnavailable": "tune a model that exists: --model lightgbm, neural or blend",
    "NotEnoughWindows": "tune at a later --as-of or with fewer tune.validation_folds",
}


def main() -> None:
    _configure_logging()
    try:
        app()
    except _known_errors() as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if type(exc).__name__ == "ValidationError":
            message = "; ".join(  # name the field: "device: Input should be ..."
                ": ".join([".".join(map(str, e["loc"])), e["msg"]]) if e["loc"] else e["msg"]
                for e in exc.errors()  # type: ignore[attr-defined]
            )
        # Plain writes: a terminal-width wrap would split the one line in two.
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.write(f"hint: {HINTS.get(type(exc).__name__, 'see nightrec --help')}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
