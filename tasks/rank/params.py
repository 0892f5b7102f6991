"""Parameters carried by models: a tuned model remembers the parameters it was trained with,
and a nightly retrain takes them from the serving champion (defaults otherwise).

Two sets travel: the LightGBM ranker's (`tuned_params`, RankerSettings overrides) and the
network's (`tuned_neural_params`, NeuralSettings overrides). A model passes both on to the
model that retrains after it, whatever its own kind, so switching `ranker.kind` keeps them.
"""

from __future__ import annotations

from typing import Any

from tasks.settings import NeuralSettings, RankerSettings, Settings

TUNED_PARAMS_KEY = "tuned_params"
TUNED_NEURAL_KEY = "tuned_neural_params"
TUNED_FROM_KEY = "tuned_params_from"
CARRIED_KEYS = (TUNED_PARAMS_KEY, TUNED_NEURAL_KEY)


def tuned_params(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The RankerSettings overrides a model was trained with, if it came from tuning."""
    if not meta:
        return None
    return dict(meta[TUNED_PARAMS_KEY]) if meta.get(TUNED_PARAMS_KEY) else None


def tuned_neural_params(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The NeuralSettings overrides a model carries, if a tuned network is behind it."""
    if not meta:
        return None
    return dict(meta[TUNED_NEURAL_KEY]) if meta.get(TUNED_NEURAL_KEY) else None


def carried_params(meta: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every tuned parameter set a model carries, by meta key (empty when none)."""
    if not meta:
        return {}
    return {key: dict(meta[key]) for key in CARRIED_KEYS if meta.get(key)}


def with_ranker_params(settings: Settings, params: dict[str, Any] | None) -> Settings:
    """Settings whose ranker uses `params` over its own values (validated, so a damaged or
    outdated model file fails loudly instead of training with nonsense)."""
    if not params:
        return settings
    ranker = RankerSettings.model_validate({**settings.ranker.model_dump(), **params})
    return settings.model_copy(update={"ranker": ranker})


def with_neural_params(settings: Settings, params: dict[str, Any] | None) -> Settings:
    """Settings whose network uses `params` over its own values (validated)."""
    if not params:
        return settings
    neural = NeuralSettings.model_validate({**settings.neural.model_dump(), **params})
    return settings.model_copy(update={"neural": neural})


def with_carried(settings: Settings, carried: dict[str, dict[str, Any]]) -> Settings:
    """Settings with both carried parameter sets applied (see `carried_params`)."""
    settings = with_ranker_params(settings, carried.get(TUNED_PARAMS_KEY))
    return with_neural_params(settings, carried.get(TUNED_NEURAL_KEY))


def nightly_carried(settings: Settings, champion_meta: dict[str, Any] | None) -> dict[str, Any]:
    """What a retrain takes from the serving champion: its carried parameter sets, unless
    `tune.nightly_uses_champion_params` is off."""
    if not settings.tune.nightly_uses_champion_params:
        return {}
    return carried_params(champion_meta)
