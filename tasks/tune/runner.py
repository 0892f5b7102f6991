"""The ask/tell loop: hand out a batch of trials, run them as parallel tasks, tell results.

`submit` starts one trial and returns something with `.result()` (a Prefect future from the
flow's task runner: threads locally, Dask on a cluster). The loop stops when the study holds
`target` finished trials, when a grid has every point finished, or when the time is up
(running trials finish; no new batch starts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import optuna
from optuna.trial import Trial, TrialState

from tasks.tune.space import SearchSpace
from tasks.tune.study import (
    GridPlan,
    Search,
    TuneError,
    ask_batch,
    finished_trials,
)
from tasks.tune.trial import TrialResult

log = logging.getLogger("nightrec.tune")


class HasResult(Protocol):
    def result(self) -> TrialResult: ...


@dataclass(frozen=True)
class LoopOutcome:
    ran: list[int]  # trial numbers started by this call
    stopped_because: str
    seconds: float


def tell(study: optuna.Study, trial: Trial, result: TrialResult) -> None:
    trial.set_user_attr("seconds", round(result.seconds, 3))
    for key, value in result.attrs.items():
        trial.set_user_attr(key, value)
    if result.state == "complete":
        study.tell(trial, result.value)
    elif result.state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("error", result.error)
        study.tell(trial, state=TrialState.FAIL)


def drive_study(
    study: optuna.Study,
    space: SearchSpace,
    search: Search,
    target: int,
    parallel: int,
    timeout_s: float | None,
    submit: Callable[[Trial], HasResult],
    clock: Callable[[], float] = time.monotonic,
) -> LoopOutcome:
    started = clock()
    plan = GridPlan.of(study.sampler) if search == "grid" else None
    ran: list[int] = []
    while True:
        missing = target - len(finished_trials(study))
        if plan is not None:
            plan.requeue_failed(study)
            missing = min(missing, len(plan.remaining(study)))
        if missing <= 0:
            reason = "grid covered" if plan is not None and not plan.remaining(study) else "trials"
            break
        if timeout_s is not None and clock() - started >= timeout_s:
            reason = "timeout"
            break
        batch = ask_batch(study, space, search, min(parallel, missing))
        futures = [(trial, submit(trial)) for trial in batch]
        results: list[TrialResult] = []
        for trial, future in futures:
            result = future.result()
            tell(study, trial, result)
            results.append(result)
            ran.append(trial.number)
        if all(r.state == "fail" for r in results):
            raise TuneError(f"every trial of a batch failed, first: {results[0].error}")
        log.info(
            "%d/%d trials finished; best %s",
            len(finished_trials(study)),
            target,
            _best(study),
        )
    return LoopOutcome(ran, reason, clock() - started)


def _best(study: optuna.Study) -> Any:
    try:
        return f"{study.best_value:.5f} (trial {study.best_trial.number})"
    except ValueError:
        return "none yet"
