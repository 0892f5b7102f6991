"""The nightly deployment: a cron schedule (02:00 in the shop's timezone by default) running
the nightly flow for yesterday. Triggered by hand from the UI, its form takes any run date."""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.nightly import nightly_flow
from tasks.settings import Settings

NAME = "nightly"


def nightly_deployment(settings: Settings) -> RunnerDeployment:
    """Scheduled nightly runs; `run_date` is left empty so each scheduled run takes yesterday."""
    return nightly_flow.to_deployment(
        name=NAME,
        schedule=Cron(settings.ops.nightly_cron, timezone=settings.ops.timezone),
        parameters={"params": default_run_parameters(settings)},
        description="Top-K recommendations for every customer as of the end of the run date "
        "(default: yesterday).",
        tags=["nightrec"],
    )


def default_run_parameters(settings: Settings) -> dict[str, str | None]:
    """Where runs read and write, fixed when the deployment is served (shown in the UI form)."""
    return {
        "home": str(settings.home.resolve()),
        "landing_dir": str(settings.landing_dir.resolve()) if settings.landing_dir else None,
        "source": settings.source,
    }
