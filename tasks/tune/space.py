"""Search spaces read from YAML: Optuna distributions for Bayesian search, points for a grid.

A space file holds `params: {name: spec}`; a spec is `type` (int | float | categorical),
`low`/`high` (and `log`, `step`) or `choices`, and optionally `grid`, the values a grid search
tries. A grid search needs a grid (or choices) for every parameter it searches; parameters
without one keep their defaults in a grid study.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.errors import NightrecError

Scalar = int | float | str | bool


class SpaceError(NightrecError, ValueError):
    """A search space file is missing, malformed or does not fit the model."""

    hint = "fix the search space YAML (see tasks/tune/spaces/)"


class ParamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Scalar] | None = None
    grid: list[Scalar] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs `choices`")
            if self.grid and not set(self.grid) <= set(self.choices):
                raise ValueError(f"grid {self.grid} is not a subset of choices {self.choices}")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"needs low < high, got low={self.low} high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled parameter needs low > 0")
        for value in self.grid or []:
            if isinstance(value, str | bool) or not self.low <= value <= self.high:
                raise ValueError(f"grid value {value!r} is outside [{self.low}, {self.high}]")
            if self.type == "int" and int(value) != value:
                raise ValueError(f"grid value {value!r} of an int parameter is not an integer")
        return self

    def distribution(self) -> BaseDistribution:
        if self.type == "categorical":
            return CategoricalDistribution(self.choices)
        if self.type == "int":
            step = int(self.step or 1)
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=step)
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> list[Scalar] | None:
        values = self.grid or (self.choices if self.type == "categorical" else None)
        if values is None:
            return None
        return [int(v) for v in values] if self.type == "int" else list(values)


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, ParamSpec] = Field(min_length=1)

    def distributions(self) -> dict[str, BaseDistribution]:
        """What a Bayesian trial samples."""
        return {name: spec.distribution() for name, spec in self.params.items()}

    def grid(self) -> dict[str, list[Scalar]]:
        """What a grid search enumerates: every parameter that has grid values."""
        grid = {name: spec.grid_values() for name, spec in self.params.items()}
        grid = {name: values for name, values in grid.items() if values}
        if not grid:
            raise SpaceError("no parameter has `grid` values: a grid search has nothing to try")
        return grid

    def grid_distributions(self) -> dict[str, BaseDistribution]:
        """The distributions of the gridded parameters (for asking a grid trial)."""
        return {name: self.params[name].distribution() for name in self.grid()}

    def grid_size(self) -> int:
        size = 1
        for values in self.grid().values():
            size *= len(values)
        return size

    def fingerprint(self) -> str:
        """Stable hash: a resumed study must search the space it started with."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_space(path: Path) -> SearchSpace:
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpaceError(f"cannot read search space {path}: {exc}") from exc
    try:
        return SearchSpace.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpaceError(f"search space {path}: {where}: {first['msg']}") from exc
