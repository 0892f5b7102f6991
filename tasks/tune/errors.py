"""The errors of `nightrec tune` that the CLI turns into one line and a hint."""

from __future__ import annotations

from tasks.tune.lgbm_objective import NotEnoughWindows
from tasks.tune.objective import ObjectiveUnavailable
from tasks.tune.space import SpaceError
from tasks.tune.study import TuneError

TUNE_ERRORS = (TuneError, SpaceError, ObjectiveUnavailable, NotEnoughWindows)
