"""Objectives by model name: what a trial of `nightrec tune --model NAME` fits and scores.

An objective builds its data once per study (`prepare`), scores one parameter set on it
(`evaluate`, reporting per-step values so a pruner can stop a poor trial early), and turns
the best parameters into a registered model candidate (`register_best`): LightGBM
(`lgbm_objective.py`), the neural ranker and the blend (`neural_objective.py`). A name can be
marked pending (refused with a reason) until its code exists. Tests register their own
objectives (e.g. a known quadratic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tasks.errors import NightrecError
from tasks.features.snapshot import Snapshot
from tasks.settings import Settings
from tasks.tune.space import SearchSpace

SPACES_DIR = Path(__file__).resolve().parent / "spaces"


class ObjectiveUnavailable(NightrecError, LookupError):
    """No objective is registered under that model name (or its code is not there yet)."""

    hint = "tune a model that exists: --model lightgbm, neural or blend"


class PruneHook(Protocol):
    def __call__(self, step: int, value: float) -> None:
        """Record the value after `step`; raises optuna.TrialPruned to stop the trial."""


@dataclass(frozen=True)
class TrialOutcome:
    value: float
    attrs: dict[str, Any] = field(default_factory=dict)  # per-fold values, rounds, ...


class Objective(Protocol):
    model: str
    direction: str  # "maximize" | "minimize"

    def default_space(self) -> Path: ...

    def check_space(self, space: SearchSpace) -> None:
        """Raise SpaceError when the space names parameters the model does not have."""

    def default_params(self, settings: Settings) -> dict[str, Any]:
        """Today's values of the space's parameters (the study's first Bayesian trial)."""

    def prepare(self, settings: Settings, snapshot: Snapshot, data_dir: Path) -> dict[str, Any]:
        """Build what every trial needs into `data_dir`, once; return a short summary."""

    def evaluate(
        self, params: dict[str, Any], settings: Settings, data_dir: Path, prune: PruneHook
    ) -> TrialOutcome: ...

    def register_best(
        self,
        settings: Settings,
        snapshot: Snapshot,
        params: dict[str, Any],
        tuning: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Train with the best parameters, register the model, run the promotion gate."""


class ObjectiveRegistry:
    """Model name -> objective factory; names whose code is not merged yet say so."""

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[], Objective]] = {}
        self._pending: dict[str, str] = {}

    def register(self, name: str, factory: Callable[[], Objective]) -> None:
        self._factories[name] = factory
        self._pending.pop(name, None)

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)

    def mark_pending(self, name: str, reason: str) -> None:
        if name not in self._factories:
            self._pending[name] = reason

    def names(self) -> list[str]:
        return sorted({*self._factories, *self._pending})

    def get(self, name: str) -> Objective:
        if name in self._factories:
            return self._factories[name]()
        if name in self._pending:
            raise ObjectiveUnavailable(f"--model {name}: {self._pending[name]}")
        raise ObjectiveUnavailable(
            f"--model {name}: no such model to tune (known: {', '.join(self.names())})"
        )
