"""The manual backfill deployment: no schedule, started from the UI with a date range.

`nightrec backfill --via-deployment` does not use it: it starts one nightly run per date so
that each date is its own flow run with its own state (see `flows/deployment_backfill.py`).
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment

from deployments.nightly import default_run_parameters
from flows.backfill import backfill_flow
from tasks.settings import Settings

NAME = "backfill"


def backfill_deployment(settings: Settings) -> RunnerDeployment:
    """Backfill a date range in one flow run, oldest first, skipping complete dates."""
    return backfill_flow.to_deployment(
        name=NAME,
        parameters={"params": default_run_parameters(settings)},
        description="Run the nightly flow for every date of a range (start and end required).",
        tags=["nightrec"],
    )
