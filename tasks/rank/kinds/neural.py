"""The PyTorch list ranker kind (tasks/rank/neural): its fit on the shared windows, its scorer,
and how its network is saved and loaded."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from tasks.constants import USER_ID
from tasks.rank import registry
from tasks.rank.dataset import LABEL
from tasks.rank.kinds.base import LIST_KEY, Scorer, Trained, TrainingContext, with_list_key
from tasks.rank.neural.data import Preprocessor, build_tensors, fit_preprocessor
from tasks.rank.neural.model import Architecture, ListRanker
from tasks.rank.neural.train import architecture, fit, predict, quantized, resolve_device
from tasks.settings import Settings

NETWORK_FILE = "network.pt"


@dataclass(frozen=True)
class NeuralScorer:
    model: torch.nn.Module
    prep: Preprocessor
    device: torch.device
    num_threads: int = 2

    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        data = build_tensors(frame, events, self.prep, list_key=USER_ID, as_of=as_of, label=None)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            return predict(self.model, data, self.device)
        finally:
            torch.set_num_threads(threads)


@dataclass
class NeuralFit:
    prep: Preprocessor
    arch: Architecture
    early: ListRanker  # trained on the older windows, stopped on the validation window
    final: ListRanker
    meta: dict[str, Any]
    valid_scores: np.ndarray  # the early network's score per validation row


def fit_neural(
    frames: list[pl.DataFrame],
    events: pl.DataFrame,
    features: list[str],
    settings: Settings,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    epoch_hook: Callable[[int, torch.nn.Module, Preprocessor], None] | None = None,
) -> NeuralFit:
    """Early-stop on the newest window having trained on the older ones, then (by default)
    refit on the newest windows for the best number of epochs, as the LightGBM ranker does.

    `epoch_hook(epoch, model, prep)` sees the early-stopping run after each of its epochs (a
    tuning trial scores it there and may stop it)."""
    cfg = settings.neural
    train, valid, refit = (
        with_list_key(frames[1:], cfg.train_list_len),
        with_list_key(frames[:1]),
        with_list_key(frames[:-1], cfg.train_list_len),
    )
    prep = fit_preprocessor(train, features, events, cfg.user_buckets, cfg.seq_len)
    arch = architecture(prep.n_dense, prep.n_items, cfg)
    started = time.perf_counter()
    train_t = build_tensors(train, events, prep, list_key=LIST_KEY)
    valid_t = build_tensors(valid, events, prep, list_key=LIST_KEY)
    tensors_s = time.perf_counter() - started
    early = fit(
        train_t,
        arch,
        cfg,
        settings.seed,
        device,
        valid=valid_t,
        checkpoint=checkpoint_dir / "early.ckpt" if checkpoint_dir else None,
        on_epoch=(lambda epoch, model: epoch_hook(epoch, model, prep)) if epoch_hook else None,
    )
    early_s = time.perf_counter() - started - tensors_s
    valid_scores = predict(early.model, valid_t, device)
    final = early
    if cfg.refit:
        refit_t = build_tensors(refit, events, prep, list_key=LIST_KEY)
        final = fit(
            refit_t,
            arch,
            cfg,
            settings.seed,
            device,
            epochs=max(early.best_epoch, 1),
            checkpoint=checkpoint_dir / "refit.ckpt" if checkpoint_dir else None,
        )
    meta = {
        "device": str(device),
        "architecture": arch.as_dict(),
        "settings": cfg.model_dump(),
        "best_epoch": early.best_epoch,
        "valid_ndcg10": early.valid_ndcg10,
        "history": early.history,
        "train_rows": refit.height if cfg.refit else train.height,
        "train_positives_kept": float(train.get_column(LABEL).sum())
        / max(float(pl.concat(frames[1:]).get_column(LABEL).sum()), 1.0),
        "seconds": {
            "tensors": round(tensors_s, 2),
            "early": round(early_s, 2),
            "total": round(time.perf_counter() - started, 2),
        },
    }
    return NeuralFit(prep, arch, early.model, final.model, meta, valid_scores)


def network_fit(ctx: TrainingContext) -> NeuralFit:
    """The context's network fit, once for every kind trained with it (neural, blend)."""
    if "network" not in ctx.shared:
        device = resolve_device(ctx.settings.neural.device)
        ctx.shared["network"] = fit_neural(
            ctx.frames, ctx.events, ctx.features, ctx.settings, device, ctx.checkpoint_dir
        )
    return ctx.shared["network"]


def network_scorers(ctx: TrainingContext, fitted: NeuralFit) -> tuple[NeuralScorer, NeuralScorer]:
    """(early-stopped, final) scorers of a fit."""
    device = resolve_device(ctx.settings.neural.device)
    threads = ctx.settings.neural.num_threads
    return (
        NeuralScorer(fitted.early, fitted.prep, device, threads),
        NeuralScorer(fitted.final, fitted.prep, device, threads),
    )


def network_bytes(model: ListRanker) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def network_text(prep: Preprocessor, arch: Architecture) -> str:
    return json.dumps({"preprocessor": json.loads(prep.to_json()), "architecture": arch.as_dict()})


def load_network(record: registry.ModelRecord, settings: Settings) -> NeuralScorer:
    """The registered network as a scorer; with `neural.quantize`, on CPU with int8 dynamic
    quantization of its Linear layers."""
    device = resolve_device(settings.neural.device)
    if settings.neural.quantize:
        device = torch.device("cpu")
    spec = json.loads(record.model_file.read_text())
    prep = Preprocessor(**spec["preprocessor"])
    model = ListRanker(Architecture(**spec["architecture"]))
    state = torch.load(record.path / NETWORK_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model = model.to(device).eval()
    if settings.neural.quantize:
        model = quantized(model)
    return NeuralScorer(model, prep, device, settings.neural.num_threads)


class NeuralKind:
    name = "neural"
    registry_prefix = "neural"

    def train(self, ctx: TrainingContext) -> Trained:
        fitted = network_fit(ctx)
        early, final = network_scorers(ctx, fitted)
        return Trained(
            self.name,
            final,
            {
                **ctx.base_meta(),
                "neural": fitted.meta,
                "model_kind": self.name,
                "train_rows": fitted.meta["train_rows"],
                "best_iteration": fitted.meta["best_epoch"],
                "validation": ctx.validate(self.name, early),
            },
            network_text(fitted.prep, fitted.arch),
            {NETWORK_FILE: network_bytes(fitted.final)},
        )

    def load(self, record: registry.ModelRecord, settings: Settings) -> Scorer:
        return load_network(record, settings)
