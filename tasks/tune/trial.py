"""One trial as a Prefect task: score a parameter set with the model's objective.

The task gets plain values (model name, parameters, paths) and a pruning hook that reopens
the study's journal by path, so it runs the same in a thread, another process or a Dask
worker that sees the same disk.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import Trial
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.settings import Settings
from tasks.tune.objectives import OBJECTIVES
from tasks.tune.study import Search, make_pruner, storage

log = logging.getLogger("nightrec.tune")


@dataclass(frozen=True)
class TrialResult:
    number: int
    state: Literal["complete", "pruned", "fail"]
    value: float | None
    attrs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class JournalPruneHook:
    """Reports a trial's intermediate values to its study and asks the study's pruner."""

    folder: Path
    study_name: str
    trial_id: int
    pruner: str
    startup_trials: int
    search: Search
    _trial: Trial | None = field(default=None, repr=False)

    def __call__(self, step: int, value: float) -> None:
        if self._trial is None:
            study = optuna.load_study(
                study_name=self.study_name,
                storage=storage(self.folder),
                pruner=make_pruner(self.pruner, self.startup_trials, self.search),
            )
            self._trial = Trial(study, self.trial_id)
        self._trial.report(value, step)
        if self._trial.should_prune():
            raise optuna.TrialPruned(f"pruned after step {step} at {value:.5f}")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trial": None}  # reopened where it lands


def run_trial(
    model: str,
    number: int,
    params: dict[str, Any],
    settings: Settings,
    data_dir: Path,
    prune: JournalPruneHook,
) -> TrialResult:
    """Never raises for a bad parameter set: a failed trial is recorded, the study goes on."""
    objective = OBJECTIVES.get(model)
    started = time.perf_counter()
    try:
        outcome = objective.evaluate(params, settings, data_dir, prune)
    except optuna.TrialPruned:
        return TrialResult(number, "pruned", None, {}, time.perf_counter() - started)
    except Exception as exc:  # recorded on the trial, shown in the report
        log.warning("trial %d failed: %s: %s", number, type(exc).__name__, exc)
        error = f"{type(exc).__name__}: {exc}"
        return TrialResult(number, "fail", None, {}, time.perf_counter() - started, error)
    seconds = time.perf_counter() - started
    log.info("trial %d: %.5f in %.1f s %s", number, outcome.value, seconds, params)
    return TrialResult(number, "complete", outcome.value, outcome.attrs, seconds)


trial_task = task(name="tune-trial", task_run_name="trial-{number}", cache_policy=NO_CACHE)(
    run_trial
)
