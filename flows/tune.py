"""`nightrec tune`: a hyperparameter study as a Prefect flow; each trial is a task.

Trials run in parallel through the flow's task runner: ThreadPoolTaskRunner locally (LightGBM
releases the GIL while it fits). On a cluster, run the flow with a Dask task runner
(`tune_flow.with_options(task_runner=DaskTaskRunner(...))` from prefect-dask) over a shared
NIGHTREC_HOME: trial tasks take paths and reopen the study journal by path.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from tasks.features.snapshot import snapshot_task
from tasks.ops.inputs import newest_event_day
from tasks.privacy.keys import owner_only_umask
from tasks.settings import load_settings
from tasks.timeutil import start_of
from tasks.tune.objectives import OBJECTIVES
from tasks.tune.report import default_trial
from tasks.tune.runner import drive_study
from tasks.tune.space import load_space
from tasks.tune.study import (
    StudySpec,
    TuneError,
    enqueue_defaults,
    finished_trials,
    make_pruner,
    open_study,
    study_dir,
    study_lock,
)
from tasks.tune.task import prepare_task, register_task, report_task
from tasks.tune.trial import JournalPruneHook, trial_task

log = logging.getLogger("nightrec.tune")


class TuneParams(BaseModel):
    """Parameters of one tuning run (what the Prefect UI shows as a form)."""

    study: str = Field(
        description="study name; the same name again resumes it; `{as_of}` in it becomes the "
        "as-of date (a weekly schedule gets one study per week)"
    )
    model: str = Field("lightgbm", description="lightgbm | neural | blend")
    search: Literal["grid", "bayes"] = "bayes"
    trials: int = Field(30, ge=1, description="finished trials the study should hold")
    timeout_s: float | None = Field(None, gt=0, description="start no new trial after this")
    as_of: dt.date | None = Field(
        None,
        description="tune on windows before this day, exclusive (default: the day after the "
        "store's newest event)",
    )
    space: str | None = Field(None, description="search space YAML (default: the model's)")
    register_best: bool = Field(True, description="register the best trial's model, gate it")
    parallel: int | None = Field(None, ge=1, description="trials at once (tune.parallel)")
    home: str | None = Field(None, description="NIGHTREC_HOME for this run")


@flow(
    name="tune",
    flow_run_name="tune-{params.study}",
    task_runner=ThreadPoolTaskRunner(max_workers=2),
)
def tune_flow(params: TuneParams) -> dict[str, Any]:
    owner_only_umask()
    settings = load_settings(home=Path(params.home) if params.home else None)
    if params.parallel:
        tune_cfg = settings.tune.model_copy(update={"parallel": params.parallel})
        settings = settings.model_copy(update={"tune": tune_cfg})
    objective = OBJECTIVES.get(params.model)
    space = load_space(Path(params.space) if params.space else objective.default_space())
    objective.check_space(space)
    # Without a date: tune on everything the store holds (never the wall clock: a store whose
    # data ends in the past would have no labelled windows before today).
    as_of_day = params.as_of or newest_event_day(settings.db_path) + dt.timedelta(days=1)
    study_name = params.study.replace("{as_of}", as_of_day.isoformat())
    params = params.model_copy(update={"study": study_name})
    as_of = start_of(as_of_day)
    folder = study_dir(settings.tuning_dir, params.study)
    spec = StudySpec(
        params.study,
        params.model,
        params.search,
        as_of_day.isoformat(),
        space.fingerprint(),
        settings.seed,
    )
    tune = settings.tune
    pruner_args = (tune.pruner, tune.prune_startup_trials, params.search)
    started = time.monotonic()
    with study_lock(folder):
        study = open_study(folder, spec, space, make_pruner(*pruner_args), objective.direction)
        if params.search == "bayes" and tune.enqueue_defaults:
            enqueue_defaults(study, objective.default_params(settings), space)
        snapshot = snapshot_task(settings, as_of, folder / "snapshot")
        data_dir = folder / "data"
        prepared = prepare_task(params.model, settings, snapshot, data_dir)
        if prepared.get("reused") is False and finished_trials(study):
            # Trials scored on other data are not comparable with new ones.
            raise TuneError(
                f"the inputs of study {params.study} changed since its trials ran (new events "
                "before as-of, or other settings); start a new --study"
            )

        def submit(trial):  # an optuna Trial in, a PrefectFuture out
            # _trial_id is the storage key the hook reopens the trial by (no public getter).
            hook = JournalPruneHook(folder, params.study, trial._trial_id, *pruner_args)
            return trial_task.submit(
                params.model, trial.number, dict(trial.params), settings, data_dir, hook
            )

        loop = drive_study(
            study, space, params.search, params.trials, tune.parallel, params.timeout_s, submit
        )
        registered = None
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if params.register_best and complete:
            best = study.best_trial
            registered = register_task(
                params.model,
                settings,
                snapshot,
                best.params,
                {
                    "study": params.study,
                    "trial": best.number,
                    "value": best.value,
                    "search": params.search,
                },
            )
        default = default_trial(study)
        info = report_task(
            study,
            folder / "report",
            {
                "ran_this_call": loop.ran,
                "stopped_because": loop.stopped_because,
                "seconds_this_call": round(time.monotonic() - started, 1),
                "prepared": {k: v for k, v in prepared.items() if k != "features"},
                "registered": registered,
                "default_value": default.value if default else None,
            },
        )
        shutil.rmtree(folder / "snapshot", ignore_errors=True)
    return {**info, "folder": str(folder)}
