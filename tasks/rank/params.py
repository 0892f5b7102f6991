"""Ranker parameters carried by models: a tuned model remembers the parameters it was trained
with, and a nightly retrain takes them from the serving champion (defaults otherwise)."""

from __future__ import annotations

from typing import Any

from tasks.settings import RankerSettings, Settings

TUNED_PARAMS_KEY = "tuned_params"
TUNED_FROM_KEY = "tuned_params_from"


def tuned_params(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The RankerSettings overrides a model was trained with, if it came from tuning."""
    if not meta:
        return None
    return dict(meta[TUNED_PARAMS_KEY]) if meta.get(TUNED_PARAMS_KEY) else None


def with_ranker_params(settings: Settings, params: dict[str, Any] | None) -> Settings:
    """Settings whose ranker uses `params` over its own values (validated, so a damaged or
    outdated model file fails loudly instead of training with nonsense)."""
    if not params:
        return settings
    ranker = RankerSettings.model_validate({**settings.ranker.model_dump(), **params})
    return settings.model_copy(update={"ranker": ranker})
