"""The objectives `nightrec tune --model NAME` knows: LightGBM, the network and the blend.
Tests register their own (e.g. a known quadratic)."""

from __future__ import annotations

from tasks.tune.objective import Objective, ObjectiveRegistry


def _lightgbm() -> Objective:
    from tasks.tune.lgbm_objective import LightGBMObjective

    return LightGBMObjective()


def _neural() -> Objective:
    from tasks.tune.neural_objective import NeuralObjective

    return NeuralObjective()


def _blend() -> Objective:
    from tasks.tune.neural_objective import BlendObjective

    return BlendObjective()


def default_registry() -> ObjectiveRegistry:
    registry = ObjectiveRegistry()
    registry.register("lightgbm", _lightgbm)
    registry.register("neural", _neural)
    registry.register("blend", _blend)
    return registry


OBJECTIVES = default_registry()
