"""Serve every nightrec deployment from this process: no work pool, no worker.

`nightrec serve` (or `python -m deployments.serve`) registers the deployments with the Prefect
API named by PREFECT_API_URL and runs their flow runs as subprocesses until stopped.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from deployments.backfill import backfill_deployment
from deployments.nightly import nightly_deployment
from deployments.tuning import tuning_deployment
from tasks.settings import Settings, load_settings


def all_deployments(settings: Settings) -> list[RunnerDeployment]:
    return [
        nightly_deployment(settings),
        backfill_deployment(settings),
        tuning_deployment(settings),
    ]


def serve_all(settings: Settings) -> None:
    serve(*all_deployments(settings), limit=settings.ops.serve_limit)


if __name__ == "__main__":
    serve_all(load_settings())
