"""The PyTorch list ranker kind (tasks/rank/neural): its fit on the shared windows, its scorer,
and how its network is saved and loaded."""

from __future__ import annotations

import dataclasses
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

from tasks.candidates.generate import MERGED_RANK
from tasks.constants import USER_ID
from tasks.rank import registry
from tasks.rank.dataset import LABEL
from tasks.rank.kinds.base import LIST_KEY, Scorer, Trained, TrainingContext, with_list_key
from tasks.rank.neural.data import ListTensors, Preprocessor, build_tensors, fit_preprocessor
from tasks.rank.neural.model import Architecture, ListRanker
from tasks.rank.neural.train import (
    PROBE_TRAIN_BATCHES,
    FitEstimate,
    architecture,
    cpu_threads,
    estimate_fit,
    fit,
    predict,
    quantized,
    resolve_device,
)
from tasks.settings import Settings

NETWORK_FILE = "network.pt"


@dataclass(frozen=True)
class NeuralScorer:
    model: torch.nn.Module
    prep: Preprocessor
    device: torch.device
    num_threads: int = 0  # 0 = the cores available

    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        data = build_tensors(frame, events, self.prep, list_key=USER_ID, as_of=as_of, label=None)
        threads = torch.get_num_threads()
        torch.set_num_threads(cpu_threads(self.num_threads))
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


@dataclass
class NeuralData:
    """The network's inputs for one set of windows, built once: the preprocessor (fitted on
    the training windows), and the tensors of the early-stopping run, its validation and the
    refit. Each window's tensors are built once and shared by the runs that use it."""

    prep: Preprocessor
    arch: Architecture
    train: ListTensors  # windows 1.. (older), lists kept by train_list_len
    valid: ListTensors  # window 0 (the newest), whole lists
    refit: ListTensors | None  # windows ..n-2 (newest), when refitting
    train_rows: int
    refit_rows: int
    positives_kept: float
    seconds: float


def neural_data(
    frames: list[pl.DataFrame], events: pl.DataFrame, features: list[str], settings: Settings
) -> NeuralData:
    cfg = settings.neural
    started = time.perf_counter()
    kept = [with_list_key([frame], cfg.train_list_len) for frame in frames]
    train = pl.concat(kept[1:])
    prep = fit_preprocessor(train, features, events, cfg.user_buckets, cfg.seq_len)
    arch = architecture(prep.n_dense, prep.n_items, cfg)
    # Window i's tensors once: the early-stopping run uses windows 1.., the refit ..n-2.
    refit_ids = range(len(frames) - 1) if cfg.refit else range(0)
    tensors = {
        i: build_tensors(kept[i], events, prep, list_key=LIST_KEY)
        for i in sorted({*range(1, len(frames)), *refit_ids})
    }
    valid = build_tensors(with_list_key(frames[:1]), events, prep, list_key=LIST_KEY)
    return NeuralData(
        prep=prep,
        arch=arch,
        train=ListTensors.concat([tensors[i] for i in range(1, len(frames))]),
        valid=valid,
        refit=ListTensors.concat([tensors[i] for i in refit_ids]) if cfg.refit else None,
        train_rows=train.height,
        refit_rows=sum(kept[i].height for i in refit_ids),
        positives_kept=float(train.get_column(LABEL).sum())
        / max(float(pl.concat(frames[1:]).get_column(LABEL).sum()), 1.0),
        seconds=time.perf_counter() - started,
    )


def fit_neural(
    frames: list[pl.DataFrame],
    events: pl.DataFrame,
    features: list[str],
    settings: Settings,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    epoch_hook: Callable[[int, torch.nn.Module, Preprocessor], None] | None = None,
    data: NeuralData | None = None,
) -> NeuralFit:
    """Early-stop on the newest window having trained on the older ones, then (by default)
    refit on the newest windows for the best number of epochs, as the LightGBM ranker does.
    `data` (from `neural_data` on the same frames) saves building the tensors again.

    `epoch_hook(epoch, model, prep)` sees the early-stopping run after each of its epochs (a
    tuning trial scores it there and may stop it)."""
    cfg = settings.neural
    started = time.perf_counter()
    data = data or neural_data(frames, events, features, settings)
    prep = data.prep
    tensors_s = data.seconds
    early = fit(
        data.train,
        data.arch,
        cfg,
        settings.seed,
        device,
        valid=data.valid,
        checkpoint=checkpoint_dir / "early.ckpt" if checkpoint_dir else None,
        on_epoch=(lambda epoch, model: epoch_hook(epoch, model, prep)) if epoch_hook else None,
    )
    early_s = time.perf_counter() - started
    valid_scores = predict(early.model, data.valid, device)
    final = early
    if data.refit is not None:
        final = fit(
            data.refit,
            data.arch,
            cfg,
            settings.seed,
            device,
            epochs=max(early.best_epoch, 1),
            checkpoint=checkpoint_dir / "refit.ckpt" if checkpoint_dir else None,
        )
    meta = {
        "device": str(device),
        "threads": cpu_threads(cfg.num_threads) if device.type == "cpu" else None,
        "architecture": data.arch.as_dict(),
        "settings": cfg.model_dump(),
        "best_epoch": early.best_epoch,
        "valid_ndcg10": early.valid_ndcg10,
        "history": early.history,
        "train_rows": data.refit_rows if data.refit is not None else data.train_rows,
        "train_positives_kept": data.positives_kept,
        "seconds": {
            "tensors": round(tensors_s, 2),
            "early": round(early_s, 2),
            "total": round(tensors_s + time.perf_counter() - started, 2),
        },
    }
    return NeuralFit(prep, data.arch, early.model, final.model, meta, valid_scores)


def network_data(ctx: TrainingContext) -> NeuralData:
    """The context's network inputs, built once (the estimate and the fit share them)."""
    if "network_data" not in ctx.shared:
        ctx.shared["network_data"] = neural_data(ctx.frames, ctx.events, ctx.features, ctx.settings)
    return ctx.shared["network_data"]


# Validation lists the estimate times (estimate_fit evaluates at most 3 batches of 256).
_PROBE_VALID_LISTS = 3 * 256


def _lists(frames: list[pl.DataFrame], max_len: int) -> int:
    """How many lists `with_list_key(frames, max_len)` keeps, from the key columns alone."""
    if not frames:
        return 0
    keys = [f.select(USER_ID, "_as_of", MERGED_RANK, LABEL) for f in frames]
    return with_list_key(keys, max_len).get_column(LIST_KEY).n_unique()


def _first_lists(frame: pl.DataFrame, n: int, max_len: int) -> pl.DataFrame:
    """The rows of `frame`'s first `n` customers (by id) whose list `max_len` keeps."""
    eligible = frame if max_len <= 0 else frame.filter(pl.col(MERGED_RANK) <= max_len)
    if max_len > 0:
        eligible = eligible.filter(pl.col(LABEL) > 0)
    users = eligible.select(pl.col(USER_ID).unique().sort().head(n))
    return frame.join(users, on=USER_ID, how="semi", maintain_order="left")


def network_estimate(ctx: TrainingContext) -> FitEstimate:
    """The most the context's network fit may take on its device, from a few timed steps.

    The steps run on tensors of a few lists only (those estimate_fit times), extrapolated to
    the windows' list counts: building every window's tensors just to find the network over
    its budget cost a large shop more memory than the LightGBM fit itself."""
    cfg, device = ctx.settings.neural, resolve_device(ctx.settings.neural.device)
    frames, max_len = ctx.frames, cfg.train_list_len
    if "network_data" in ctx.shared or len(frames) < 2:
        data = network_data(ctx)
        return estimate_fit(
            data.train,
            data.valid,
            data.refit.n_lists if data.refit is not None else 0,
            data.arch,
            cfg,
            ctx.settings.seed,
            device,
        )
    probe_train = with_list_key(
        [_first_lists(frames[1], PROBE_TRAIN_BATCHES * cfg.batch_lists, max_len)], max_len
    )
    probe_valid = with_list_key([_first_lists(frames[0], _PROBE_VALID_LISTS, 0)])
    prep = fit_preprocessor(probe_train, ctx.features, ctx.events, cfg.user_buckets, cfg.seq_len)
    train = build_tensors(probe_train, ctx.events, prep, list_key=LIST_KEY)
    valid = build_tensors(probe_valid, ctx.events, prep, list_key=LIST_KEY)
    n_train, n_valid = _lists(frames[1:], max_len), _lists(frames[:1], 0)
    n_refit = _lists(frames[:-1], max_len) if cfg.refit else 0
    estimate = estimate_fit(
        train,
        valid,
        n_refit,
        architecture(prep.n_dense, prep.n_items, cfg),
        cfg,
        ctx.settings.seed,
        device,
        n_train_lists=n_train,
        n_valid_lists=n_valid,
    )
    per_train = train.nbytes / max(train.n_lists, 1)
    per_valid = valid.nbytes / max(valid.n_lists, 1)
    tensor_mib = (per_train * (n_train + n_refit) + per_valid * n_valid) / 2**20
    return dataclasses.replace(estimate, tensor_mib=tensor_mib)


def network_fit(ctx: TrainingContext) -> NeuralFit:
    """The context's network fit, once for every kind trained with it (neural, blend)."""
    if "network" not in ctx.shared:
        device = resolve_device(ctx.settings.neural.device)
        ctx.shared["network"] = fit_neural(
            ctx.frames,
            ctx.events,
            ctx.features,
            ctx.settings,
            device,
            ctx.checkpoint_dir,
            data=network_data(ctx),
        )
        ctx.shared.pop("network_data", None)  # the fit holds what it needs
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
