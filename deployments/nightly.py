"""The nightly deployment: a cron schedule (02:00 in the shop's timezone by default) running
the nightly flow for yesterday, served without a worker by `python -m deployments.nightly`.

For production, point the same flow at a work pool instead (`prefect work-pool create`,
`nightly_flow.deploy(...)`); the parameters and schedule stay as defined here.
"""

from __future__ import annotations

import argparse

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.nightly import nightly_flow

DEFAULT_CRON = "0 2 * * *"


def nightly_deployment(
    cron: str = DEFAULT_CRON,
    timezone: str = "UTC",
    landing_dir: str | None = None,
    source: str | None = None,
) -> RunnerDeployment:
    """The scheduled nightly run; `run_date` is left empty so each run takes yesterday."""
    return nightly_flow.to_deployment(
        name="nightly",
        schedule=Cron(cron, timezone=timezone),
        parameters={"params": {"landing_dir": landing_dir, "source": source}},
        description="Nightly recommendations for yesterday's run date.",
        tags=["nightrec"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve nightrec's deployments (no worker).")
    parser.add_argument("--cron", default=DEFAULT_CRON)
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--landing-dir")
    parser.add_argument("--source")
    args = parser.parse_args()
    serve(nightly_deployment(args.cron, args.timezone, args.landing_dir, args.source))


if __name__ == "__main__":
    main()
