"""The weekly tuning deployment: a Bayesian LightGBM study every Sunday (04:00 in the shop's
timezone by default) on the validation windows before that day.

Its best trial is registered and goes through the promotion gate (`ops.tuning_registers_best`,
on by default): the study's objective replays the nightly trainer at earlier as-of instants, and on
Online Retail its winner also won on the later test window (benchmarks/results/tuning.md)."""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.tune import tune_flow
from tasks.settings import Settings

NAME = "weekly"


def tuning_deployment(settings: Settings) -> RunnerDeployment:
    return tune_flow.to_deployment(
        name=NAME,
        schedule=Cron(settings.ops.tuning_cron, timezone=settings.ops.timezone),
        parameters={
            "params": {
                "study": "weekly-lightgbm-{as_of}",
                "model": "lightgbm",
                "search": "bayes",
                "trials": settings.ops.tuning_trials,
                "register_best": settings.ops.tuning_registers_best,
                "home": str(settings.home.resolve()),
            }
        },
        description="Weekly Bayesian LightGBM study; the best trial is gated like any model.",
        tags=["nightrec"],
    )
