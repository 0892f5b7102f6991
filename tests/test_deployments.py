"""The nightly deployment's schedule and parameters (served by `python -m deployments.nightly`)."""

from __future__ import annotations

from deployments.nightly import nightly_deployment


def test_nightly_deployment_runs_at_two_in_the_configured_timezone() -> None:
    deployment = nightly_deployment(timezone="Europe/London", landing_dir="/landing", source="x")
    assert deployment.name == "nightly"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 2 * * *"
    assert schedule.schedule.timezone == "Europe/London"
    # run_date is left out so each scheduled run takes yesterday.
    assert deployment.parameters == {"params": {"landing_dir": "/landing", "source": "x"}}
