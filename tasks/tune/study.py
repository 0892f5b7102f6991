"""Optuna studies under NIGHTREC_HOME: create or resume, hand out trials, take results back.

One study = one folder `$NIGHTREC_HOME/tuning/<name>/` holding `journal.log` (Optuna's journal
file storage: an append-only log, so a process killed with -9 loses at most the trials it was
running) and `.lock` (an flock held while a process runs the study; the kernel drops it when
that process dies, so a RUNNING trial found by the next holder was orphaned by a dead run).

Trials are handed out with Optuna's ask/tell interface in batches, one batch per round of
parallel tasks. A grid study never repeats a point: points with a finished (COMPLETE or
PRUNED) trial are skipped, and a point whose trial failed (or was left RUNNING by a killed
run, which is then marked FAIL) is queued again.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.pruners import BasePruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, GridSampler, TPESampler
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from tasks.errors import NightrecError
from tasks.tune.space import SearchSpace

Search = Literal["grid", "bayes"]
JOURNAL_FILE = "journal.log"
LOCK_FILE = ".lock"
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DEFAULTS_ATTR = "default_params"
REQUEUED_ATTR = "requeued_from"


class TuneError(NightrecError, RuntimeError):
    """A study cannot be created, resumed or run; the message says what to do."""

    hint = "see `nightrec tune --help`"


class AskTellGridSampler(GridSampler):
    """GridSampler for ask/tell: which points remain is decided by `GridPlan`, so the sampler's
    own end-of-grid check (which calls `study.stop()`, legal only inside `optimize`, and reads
    a `grid_id` that re-queued trials do not have) is switched off."""

    def after_trial(self, study, trial, state, values) -> None:
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._param_names)

    @property
    def points(self) -> tuple[tuple, ...]:
        """Every grid point, indexed by the `grid_id` the sampler gives a trial (its seeded
        shuffle of the product, so the same seed gives the same ids on a rerun)."""
        return tuple(tuple(p) for p in self._all_grids)


@dataclass(frozen=True)
class StudySpec:
    """What a study searches; a rerun under the same name must ask for the same thing."""

    name: str
    model: str
    search: Search
    as_of: str
    space_fingerprint: str
    seed: int

    def attrs(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "search": self.search,
            "as_of": self.as_of,
            "space": self.space_fingerprint,
            "seed": self.seed,
        }


def study_dir(tuning_dir: Path, name: str) -> Path:
    if not STUDY_NAME.match(name):
        raise TuneError(
            f"study name {name!r}: use letters, digits, '.', '_' or '-' (at most 100 characters)"
        )
    return tuning_dir / name


@contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Only one process runs a study at a time; the lock dies with its process."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise TuneError(
                f"study {folder.name} is being run by another process (pid {holder}); "
                "wait for it or pick another --study name"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def storage(folder: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(folder / JOURNAL_FILE)))


def make_sampler(spec: StudySpec, space: SearchSpace) -> BaseSampler:
    if spec.search == "grid":
        return AskTellGridSampler(space.grid(), seed=spec.seed)
    # constant_liar: trials asked together in one batch steer away from each other.
    return TPESampler(seed=spec.seed, multivariate=True, constant_liar=True, n_startup_trials=8)


def make_pruner(kind: str, startup_trials: int, search: Search) -> BasePruner:
    if kind == "none" or search == "grid":  # a grid must score every point it claims to cover
        return NopPruner()
    return MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)


def open_study(
    folder: Path, spec: StudySpec, space: SearchSpace, pruner: BasePruner, direction: str
) -> optuna.Study:
    """Create the study, or load it and check it is the same search. Call under study_lock:
    every RUNNING trial then belongs to a dead run and is marked FAIL."""
    store = storage(folder)
    sampler = make_sampler(spec, space)
    existing = {s.study_name for s in optuna.get_all_study_summaries(store)}
    if spec.name in existing:
        study = optuna.load_study(
            study_name=spec.name, storage=store, sampler=sampler, pruner=pruner
        )
        stored = study.user_attrs
        mismatched = {k: (stored.get(k), v) for k, v in spec.attrs().items() if stored.get(k) != v}
        if mismatched:
            what = ", ".join(f"{k} {old!r} (asked {new!r})" for k, (old, new) in mismatched.items())
            raise TuneError(
                f"study {spec.name} was created with {what}; rerun with the same options "
                "or pick another --study name"
            )
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.set_user_attr(f"orphaned_trial_{trial.number}", "left RUNNING by a killed run")
            study.tell(trial.number, state=TrialState.FAIL)
        return study
    study = optuna.create_study(
        study_name=spec.name,
        storage=store,
        sampler=sampler,
        pruner=pruner,
        direction=StudyDirection.MAXIMIZE if direction == "maximize" else StudyDirection.MINIMIZE,
    )
    for key, value in spec.attrs().items():
        study.set_user_attr(key, value)
    return study


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


def _point_key(params: dict[str, Any], names: Sequence[str]) -> tuple:
    return tuple(params.get(n) for n in names)


@dataclass(frozen=True)
class GridPlan:
    """Which grid points still need a finished trial, and which to queue again.

    Points are indexed as the study's GridSampler indexes them, so a trial's `grid_id` names
    its point even when a killed run left the trial with only some of its parameters drawn.
    """

    names: tuple[str, ...]
    points: tuple[tuple, ...]

    @classmethod
    def of(cls, sampler: BaseSampler) -> GridPlan:
        if not isinstance(sampler, AskTellGridSampler):
            raise TuneError("a grid plan needs the study's AskTellGridSampler")
        return cls(sampler.names, sampler.points)

    def point_of(self, trial: FrozenTrial) -> tuple:
        if "grid_id" in trial.system_attrs:
            return self.points[trial.system_attrs["grid_id"]]
        return _point_key(trial.system_attrs.get("fixed_params") or trial.params, self.names)

    def done(self, study: optuna.Study) -> set[tuple]:
        return {self.point_of(t) for t in finished_trials(study)}

    def remaining(self, study: optuna.Study) -> list[tuple]:
        done = self.done(study)
        return [p for p in self.points if p not in done]

    def requeue_failed(self, study: optuna.Study) -> int:
        """Queue again every point whose trials all failed: GridSampler counts a failed trial
        as visited and would never return to its point."""
        trials = study.get_trials(deepcopy=False)
        pending = {
            self.point_of(t) for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)
        }
        done = self.done(study)
        failed: dict[tuple, int] = {}
        for t in trials:
            if t.state == TrialState.FAIL:
                failed.setdefault(self.point_of(t), t.number)
        queued = 0
        for point, number in failed.items():
            if point in done or point in pending or point not in self.points:
                continue
            study.enqueue_trial(dict(zip(self.names, point, strict=True)), {REQUEUED_ATTR: number})
            queued += 1
        return queued


def enqueue_defaults(study: optuna.Study, defaults: dict[str, Any], space: SearchSpace) -> bool:
    """A Bayesian study starts from the parameters the ranker uses today, so its best trial is
    never worse than them on the same folds. Once per study (again if that trial died)."""
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(DEFAULTS_ATTR) and trial.state != TrialState.FAIL:
            return False
    distributions = space.distributions()
    inside = {
        name: value
        for name, value in defaults.items()
        if name in distributions
        and distributions[name]._contains(distributions[name].to_internal_repr(value))
    }
    if len(inside) != len(distributions):
        return False  # a default outside the space: the space wins
    study.enqueue_trial(inside, {DEFAULTS_ATTR: True})
    return True


def ask_batch(study: optuna.Study, space: SearchSpace, search: Search, size: int) -> list[Trial]:
    """`size` new trials with their parameters already drawn (queued ones first)."""
    distributions = space.grid_distributions() if search == "grid" else space.distributions()
    return [study.ask(distributions) for _ in range(size)]
