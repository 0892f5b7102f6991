"""The model kinds a run can train and serve, by name. Adding a kind is one module with a
class implementing `ModelKind` (tasks/rank/kinds/base.py) plus one line in `KINDS` below.

`train_models` trains several kinds on one shared context (windows, fits, validation data);
`register_trained` stores a model under its kind's prefix; `load_scorer` loads any registered
model back as a scorer.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from tasks.errors import NightrecError
from tasks.rank import registry
from tasks.rank.kinds.base import LIST_KEY, ModelKind, Trained, TrainingContext, with_list_key
from tasks.rank.kinds.blend import BlendKind
from tasks.rank.kinds.lightgbm import LightGBMKind
from tasks.rank.kinds.neural import NeuralKind, fit_neural, network_estimate, network_fit
from tasks.rank.neural.train import resolve_device
from tasks.rank.recommend import Scorer, recommend_with
from tasks.settings import Settings

__all__ = [
    "AUTO",
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
    "train_auto",
    "train_auto_kinds",
    "train_models",
    "train_nightly",
    "with_list_key",
]

log = logging.getLogger("nightrec.rank")
AUTO = "auto"
SELECTION_KEY = "kind_selection"  # in a nightly model's meta: how its kind was chosen
# Preferred on equal validation NDCG: the cheaper to train and serve first.
SIMPLER_FIRST = ("lightgbm", "neural", "blend")

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
    """The kind `ranker.kind` pins, or "auto": the nightly retrain then trains the candidates
    that fit the time budget and keeps the best on validation (`train_nightly`)."""
    if settings.ranker.kind == AUTO:
        return AUTO
    return kind_of(settings.ranker.kind).name


def validation_ndcg(meta: dict[str, Any]) -> float:
    """A trained model's protocol NDCG@K on its validation window (its own row)."""
    validation = meta["validation"]
    row = validation["metrics"][validation.get("model_key", "lightgbm")]
    return float(row[f"ndcg@{validation['k']}"])


def pick_best(ndcg: dict[str, float], min_gain: float) -> tuple[str, str]:
    """(kind, why): the best validation NDCG; another kind replaces LightGBM only when it is
    more than `min_gain` above it; ties go to the simpler kind (SIMPLER_FIRST)."""
    order = sorted(ndcg, key=lambda k: (-ndcg[k], SIMPLER_FIRST.index(k)))
    best = order[0]
    base = ndcg.get("lightgbm")
    if best != "lightgbm" and base is not None and ndcg[best] - base <= min_gain:
        return "lightgbm", (
            f"lightgbm kept: {best} {ndcg[best]:.4f} is not more than {min_gain:g} above "
            f"lightgbm {base:.4f}"
        )
    if len(ndcg) == 1:
        return best, f"{best}: the only kind trained"
    runner = order[1]
    if ndcg[best] == ndcg[runner]:
        return best, (
            f"{best} and {runner} tie on validation NDCG ({ndcg[best]:.4f}); the simpler "
            f"kind wins a tie"
        )
    return best, (
        f"{best} has the best validation NDCG ({ndcg[best]:.4f} vs {runner} {ndcg[runner]:.4f})"
    )


def _rss_mib() -> float:
    """This process's resident memory now (Linux); its peak so far where /proc is absent."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def train_auto(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: dt.datetime,
    settings: Settings,
    checkpoint_dir: Path | None = None,
) -> Trained:
    """`ranker.kind=auto`: LightGBM always; the network and the blend when the network's
    estimated training time on this machine fits `neural.auto_budget_s` and its tensors fit
    `neural.auto_memory_mib` beside the memory in use; the kind with the best validation
    NDCG wins. Its meta says which kinds were trained, each one's validation
    NDCG, and why the winner won or the network was skipped."""
    trained, selection = train_auto_kinds(events, catalog, as_of, settings, checkpoint_dir)
    chosen = trained[selection["winner"]]
    chosen.meta[SELECTION_KEY] = selection
    return chosen


def train_auto_kinds(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: dt.datetime,
    settings: Settings,
    checkpoint_dir: Path | None = None,
) -> tuple[dict[str, Trained], dict[str, Any]]:
    """What `train_auto` trains, every kind of it (name -> model), and its selection (the
    winner and why): the backtest scores each kind and auto's pick from one training."""
    ctx = TrainingContext(events, catalog, as_of, settings, checkpoint_dir)
    started = time.perf_counter()
    trained = {"lightgbm": KINDS["lightgbm"].train(ctx)}
    seconds = {"lightgbm": round(time.perf_counter() - started, 1)}
    budget = settings.neural.auto_budget_s
    network: dict[str, Any] = {"budget_s": budget}
    try:
        device = resolve_device(settings.neural.device)
        network["device"] = str(device)
        estimate = network_estimate(ctx)
        network["estimate"] = estimate.as_dict()
        memory = settings.neural.auto_memory_mib
        in_use, need = _rss_mib(), 2 * (estimate.tensor_mib or 0.0)
        network["memory_mib"] = {"in_use": round(in_use), "tensors_x2": round(need)}
        if estimate.seconds > budget:
            network["status"] = "skipped"
            network["why"] = (
                f"network skipped: estimated {estimate.seconds:.0f} s on {device} over the "
                f"budget {budget:.0f} s (neural.auto_budget_s)"
            )
            ctx.shared.pop("network_data", None)
        elif in_use + need > memory:
            network["status"] = "skipped"
            network["why"] = (
                f"network skipped: its tensors need about {need:.0f} MiB beside the "
                f"{in_use:.0f} MiB in use, over the budget {memory} MiB (neural.auto_memory_mib)"
            )
            ctx.shared.pop("network_data", None)
        else:
            started = time.perf_counter()
            network_fit(ctx)
            fit_s = time.perf_counter() - started
            for name in ("neural", "blend"):
                trained[name] = KINDS[name].train(ctx)
            network["status"] = "trained"
            network["fit_seconds"] = round(fit_s, 1)
            # The fit plus the blend's weight and both kinds' protocol validation.
            network["seconds"] = round(time.perf_counter() - started, 1)
            network["why"] = (
                f"network trained: estimated {estimate.seconds:.0f} s on {device} within the "
                f"budget {budget:.0f} s; the fit took {fit_s:.0f} s, with the blend and "
                f"validation {network['seconds']:.0f} s"
            )
    except Exception as exc:  # LightGBM still serves; the run says the network failed
        log.exception("training the network failed")
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        trained = {"lightgbm": trained["lightgbm"]}
        network["status"] = "failed"
        network["why"] = f"network failed ({type(exc).__name__}: {first})"
    log.info("%s", network["why"])
    ndcg = {name: validation_ndcg(model.meta) for name, model in trained.items()}
    winner, why = pick_best(ndcg, settings.ranker.auto_min_gain)
    selection = {
        "mode": AUTO,
        "winner": winner,
        "why": why,
        "validation_ndcg": {name: round(v, 6) for name, v in ndcg.items()},
        "validation_window": ctx.validation_as_of.isoformat(),
        "trained": list(trained),
        "network": network,
        "lightgbm_seconds": seconds["lightgbm"],
    }
    log.info("model kind %s: %s; %s", winner, why, network["why"])
    return trained, selection


def train_nightly(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: dt.datetime,
    settings: Settings,
    checkpoint_dir: Path | None = None,
) -> Trained:
    """The nightly retrain: the kind `ranker.kind` pins, or with auto the best that fits."""
    kind = resolve_kind(settings)
    if kind == AUTO:
        return train_auto(events, catalog, as_of, settings, checkpoint_dir)
    trained = train_models([kind], events, catalog, as_of, settings, checkpoint_dir)[kind]
    trained.meta[SELECTION_KEY] = {
        "mode": "pinned",
        "winner": kind,
        "why": f"ranker.kind={kind}",
        "validation_ndcg": {kind: round(validation_ndcg(trained.meta), 6)},
        "trained": [kind],
    }
    return trained


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
