"""The model kinds a run can train and serve, by name. Adding a kind is one module with a
class implementing `ModelKind` (tasks/rank/kinds/base.py) plus one line in `KINDS` below.

`train_models` trains several kinds on one shared context (windows, fits, validation data);
`register_trained` stores a model under its kind's prefix; `load_scorer` loads any registered
model back as a scorer.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from tasks.errors import NightrecError
from tasks.rank import registry
from tasks.rank.kinds.base import LIST_KEY, ModelKind, Trained, TrainingContext, with_list_key
from tasks.rank.kinds.blend import BlendKind
from tasks.rank.kinds.lightgbm import LightGBMKind
from tasks.rank.kinds.neural import NeuralKind, fit_neural
from tasks.rank.neural.train import resolve_device
from tasks.rank.recommend import Scorer, recommend_with
from tasks.settings import Settings

__all__ = [
    "KINDS",
    "LIST_KEY",
    "ModelKind",
    "Scorer",
    "Trained",
    "TrainingContext",
    "fit_neural",
    "load_scorer",
    "recommend_with",
    "register_trained",
    "resolve_kind",
    "train_models",
    "with_list_key",
]

KINDS: dict[str, ModelKind] = {
    kind.name: kind for kind in (LightGBMKind(), NeuralKind(), BlendKind())
}


class UnknownKind(NightrecError, ValueError):
    hint = "set ranker.kind to auto or one of the kinds named above"


def kind_of(name: str) -> ModelKind:
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(KINDS)
        raise UnknownKind(f"unknown model kind {name!r}; known: {known}") from None


def resolve_kind(settings: Settings) -> str:
    """auto: blend where the network trains on CUDA, LightGBM alone on CPU (the CPU retraining
    day is already 76-84 s of its 90 s budget with LightGBM alone)."""
    if settings.ranker.kind != "auto":
        return kind_of(settings.ranker.kind).name
    device = resolve_device(settings.neural.device)
    return "blend" if device.type == "cuda" else "lightgbm"


def train_models(
    kinds: list[str],
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: dt.datetime,
    settings: Settings,
    checkpoint_dir: Path | None = None,
) -> dict[str, Trained]:
    """Train the asked kinds on events before `as_of`, on one shared set of windows.
    Raises NotEnoughHistory (tasks.rank.train) when there is too little history."""
    chosen = [kind_of(name) for name in kinds]
    ctx = TrainingContext(events, catalog, as_of, settings, checkpoint_dir)
    return {kind.name: kind.train(ctx) for kind in chosen}


def register_trained(models_dir: Path, trained: Trained) -> registry.ModelRecord:
    prefix = kind_of(trained.kind).registry_prefix
    return registry.register(models_dir, prefix, trained.model_text, trained.meta, trained.files)


def load_scorer(record: registry.ModelRecord, settings: Settings) -> Scorer:
    """The scorer of a registered model of any kind (models before `model_kind` existed are
    LightGBM's)."""
    return kind_of(record.meta.get("model_kind", "lightgbm")).load(record, settings)
