"""Test-only objectives for the tuning flow: a known quadratic, injected by model name.

`quadratic` peaks at x = 0.3, y = -0.2 with value 0; its defaults (x = -1.5, y = 1.5) score
-(1.8^2 + 1.7^2) = -6.13. Each evaluation appends `start`/`end` lines to a log file (when one
is given), so a test can see which points ran in which process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tasks.tune.objective import TrialOutcome
from tasks.tune.objectives import OBJECTIVES
from tasks.tune.space import SearchSpace, SpaceError

OPTIMUM = {"x": 0.3, "y": -0.2}
DEFAULTS = {"x": -1.5, "y": 1.5}


def quadratic(x: float, y: float) -> float:
    return -((x - OPTIMUM["x"]) ** 2) - (y - OPTIMUM["y"]) ** 2


class QuadraticObjective:
    model = "quadratic"
    direction = "maximize"

    def __init__(self, space: Path, delay_s: float = 0.0, log: Path | None = None) -> None:
        self.space, self.delay_s, self.log = space, delay_s, log

    def default_space(self) -> Path:
        return self.space

    def check_space(self, space: SearchSpace) -> None:
        if set(space.params) - {"x", "y"}:
            raise SpaceError("quadratic takes x and y only")

    def default_params(self, settings: Any) -> dict[str, Any]:
        return dict(DEFAULTS)

    def prepare(self, settings: Any, snapshot: Any, data_dir: Path) -> dict[str, Any]:
        return {"data": "none needed"}

    def _log(self, event: str, params: dict[str, Any]) -> None:
        if self.log is not None:
            line = json.dumps({"event": event, "pid": os.getpid(), "params": params})
            with open(self.log, "a") as handle:
                handle.write(line + "\n")

    def evaluate(self, params: dict[str, Any], settings: Any, data_dir: Path, prune: Any):
        self._log("start", params)
        time.sleep(self.delay_s)
        x, y = params.get("x", DEFAULTS["x"]), params.get("y", DEFAULTS["y"])
        value = quadratic(x, y)
        prune(0, value)
        self._log("end", params)
        return TrialOutcome(value, {"x_seen": x})

    def register_best(self, *args: Any) -> None:
        return None


def register_quadratic(space: Path, delay_s: float = 0.0, log: Path | None = None) -> None:
    OBJECTIVES.register("quadratic", lambda: QuadraticObjective(space, delay_s, log))


def unregister_quadratic() -> None:
    OBJECTIVES.unregister("quadratic")
