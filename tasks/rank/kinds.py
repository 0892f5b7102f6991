"""The model kinds a run can train and serve (lightgbm, neural, blend): training them on
shared windows, storing them in the registry, loading them back as scorers.

A scorer maps a candidate frame (as of one moment) to a score per row; everything after
scoring (top-K, padding, publishing, metrics) is the same for every kind.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import polars as pl
import torch

from tasks.candidates.generate import MERGED_RANK, popular_items
from tasks.constants import ITEM_ID, SCORE, TS, USER_ID
from tasks.evaluate.protocol import evaluated_users
from tasks.features.build import feature_columns
from tasks.rank import lgbm, registry
from tasks.rank.dataset import LABEL, candidate_frame
from tasks.rank.neural import blend as blending
from tasks.rank.neural.data import Preprocessor, build_tensors, fit_preprocessor
from tasks.rank.neural.model import Architecture, ListRanker
from tasks.rank.neural.train import architecture, fit, predict, quantized, resolve_device
from tasks.rank.topk import top_k
from tasks.rank.train import train_ranker, training_windows, validation_report
from tasks.settings import Settings

log = logging.getLogger("nightrec.rank")
KINDS = ("lightgbm", "neural", "blend")
REGISTRY_KIND = {"lightgbm": "lgbm", "neural": "neural", "blend": "blend"}
NETWORK_FILE = "network.pt"
BOOSTER_FILE = "booster.txt"
LIST_KEY = "_list_key"


def resolve_kind(settings: Settings) -> str:
    """auto: blend where the network trains on CUDA, LightGBM alone on CPU (the CPU retraining
    day is already 76-84 s of its 90 s budget with LightGBM alone)."""
    if settings.ranker.kind != "auto":
        return settings.ranker.kind
    device = resolve_device(settings.neural.device)
    return "blend" if device.type == "cuda" else "lightgbm"


class Scorer(Protocol):
    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        """A score per row of a candidate frame built as of `as_of` (higher = better)."""
        ...


@dataclass(frozen=True)
class LightGBMScorer:
    booster: lgb.Booster
    features: list[str]

    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        return lgbm.predict(self.booster, frame, self.features)


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


@dataclass(frozen=True)
class BlendScorer:
    lightgbm: Scorer
    neural: Scorer
    weight: float  # on LightGBM's per-customer z-score

    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        return blending.blend(
            frame.get_column(USER_ID),
            self.lightgbm.score(frame, events, as_of),
            self.neural.score(frame, events, as_of),
            self.weight,
        )


def scored_frame(
    scorer: Scorer, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime
) -> pl.DataFrame:
    scores = scorer.score(frame, events, as_of)
    return frame.select(USER_ID, ITEM_ID).with_columns(
        pl.Series(SCORE, np.asarray(scores, dtype=np.float64))
    )


def recommend_with(
    scorer: Scorer,
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    users: pl.Series,
    as_of: dt.datetime,
    settings: Settings,
    frame: pl.DataFrame | None = None,
    allowed_items: pl.Series | None = None,
    check_features: Callable[[pl.DataFrame], None] | None = None,
) -> pl.DataFrame:
    """Top-K per user as of `as_of`, padded with popular items (as train.recommend does).

    `frame` is the users' candidate frame when the caller already built it; `allowed_items`
    (when given) limits what may be recommended (catalog less forbidden items);
    `check_features` sees the feature frame before anything is scored.
    """
    past = events.filter(pl.col(TS) < as_of)
    if frame is None:
        frame = candidate_frame(past, catalog, users, as_of, settings.candidates)
    if check_features is not None:
        check_features(frame)
    popular = popular_items(events, as_of, settings.candidates.popular_days, 2 * settings.k)
    if allowed_items is not None:
        frame = frame.filter(pl.col(ITEM_ID).is_in(allowed_items.implode()))
        # Rank every item first: the filter must not leave fewer than 2k to pad with.
        popular = (
            popular_items(events, as_of, settings.candidates.popular_days, events.height + 1)
            .filter(pl.col(ITEM_ID).is_in(allowed_items.implode()))
            .head(2 * settings.k)
        )
    scored = scored_frame(scorer, frame, past, as_of)
    return top_k(scored, users, popular.get_column(ITEM_ID), settings.k)


@dataclass
class Trained:
    """One trained model: how it scores, what it saved, what the registry records."""

    kind: str
    scorer: Scorer
    meta: dict[str, Any]
    model_text: str
    files: dict[str, bytes] = field(default_factory=dict)


def _network_bytes(model: ListRanker) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def _neural_text(prep: Preprocessor, arch: Architecture) -> str:
    return json.dumps({"preprocessor": json.loads(prep.to_json()), "architecture": arch.as_dict()})


def with_list_key(frames: list[pl.DataFrame], max_len: int = 0) -> pl.DataFrame:
    frame = pl.concat(frames).with_columns(
        (pl.col(USER_ID) + pl.lit("@") + pl.col("_as_of").cast(pl.Utf8)).alias(LIST_KEY)
    )
    if max_len > 0:
        # The tail of a merged list rarely holds a purchase; the loss pays for every row.
        frame = frame.filter(pl.col(MERGED_RANK) <= max_len).filter(
            pl.col(LABEL).max().over(LIST_KEY) > 0
        )
    return frame


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


def train_models(
    kinds: list[str],
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    cutoff: dt.datetime,
    settings: Settings,
    checkpoint_dir: Path | None = None,
) -> dict[str, Trained]:
    """Train the asked kinds on events before `cutoff`, on one shared set of windows.
    Raises NotEnoughHistory (tasks.rank.train) when there is too little history."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown model kind(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
    events = events.filter(pl.col(TS) < cutoff)
    windows = training_windows(events, catalog, cutoff, settings)
    frames, used = windows
    features = feature_columns(frames[0].drop(LABEL))
    need_lgbm = "lightgbm" in kinds or "blend" in kinds
    need_nn = "neural" in kinds or "blend" in kinds
    lgbm_outcome = train_ranker(events, catalog, cutoff, settings, windows) if need_lgbm else None
    out: dict[str, Trained] = {}
    if lgbm_outcome is not None and "lightgbm" in kinds:
        out["lightgbm"] = Trained(
            "lightgbm",
            LightGBMScorer(lgbm_outcome.booster, features),
            {**lgbm_outcome.meta, "model_kind": "lightgbm"},
            lgbm_outcome.booster.model_to_string(),
        )
    if not need_nn:
        return out
    device = resolve_device(settings.neural.device)
    nn_fit = fit_neural(frames, events, features, settings, device, checkpoint_dir)
    threads = settings.neural.num_threads
    nn_early = NeuralScorer(nn_fit.early, nn_fit.prep, device, threads)
    nn_final = NeuralScorer(nn_fit.final, nn_fit.prep, device, threads)
    # Validation: the early-stopped models on the newest window, beside the baselines.
    valid_as_of = used[0]
    users = evaluated_users(events, valid_as_of, settings.horizon_days)
    past = events.filter(pl.col(TS) < valid_as_of)
    valid_frame = candidate_frame(past, catalog, users, valid_as_of, settings.candidates)
    early_scorers: dict[str, Scorer] = {"neural": nn_early}
    weight, tried = None, {}
    if "blend" in kinds:
        assert lgbm_outcome is not None and lgbm_outcome.early_booster is not None
        lgbm_early = LightGBMScorer(lgbm_outcome.early_booster, features)
        valid = with_list_key(frames[:1])
        weight, tried = blending.choose_weight(
            valid.get_column(LIST_KEY),
            lgbm.predict(lgbm_outcome.early_booster, valid, features),
            nn_fit.valid_scores,
            valid.get_column(LABEL).to_numpy(),
            settings.neural.blend_grid,
        )
        log.info("blend weight on LightGBM %.2f (validation NDCG@10 by weight %s)", weight, tried)
        early_scorers["blend"] = BlendScorer(lgbm_early, nn_early, weight)
    recs = {
        name: recommend_with(scorer, events, catalog, users, valid_as_of, settings, valid_frame)
        for name, scorer in early_scorers.items()
    }
    base_meta = {
        "cutoff": cutoff.isoformat(),
        "train_windows": [d.isoformat() for d in used[:-1]],
        "validation_window": valid_as_of.isoformat(),
        "candidates": settings.candidates.model_dump(),
        "features": features,
        "neural": nn_fit.meta,
    }
    if "neural" in kinds:
        report = validation_report({"neural": recs["neural"]}, events, valid_as_of, settings, users)
        out["neural"] = Trained(
            "neural",
            nn_final,
            {
                **base_meta,
                "model_kind": "neural",
                "train_rows": nn_fit.meta["train_rows"],
                "best_iteration": nn_fit.meta["best_epoch"],
                "validation": {**report, "model_key": "neural"},
            },
            _neural_text(nn_fit.prep, nn_fit.arch),
            {NETWORK_FILE: _network_bytes(nn_fit.final)},
        )
    if "blend" in kinds:
        assert lgbm_outcome is not None and weight is not None
        report = validation_report({"blend": recs["blend"]}, events, valid_as_of, settings, users)
        lgbm_final = LightGBMScorer(lgbm_outcome.booster, features)
        out["blend"] = Trained(
            "blend",
            BlendScorer(lgbm_final, nn_final, weight),
            {
                **base_meta,
                "model_kind": "blend",
                "train_rows": lgbm_outcome.meta["train_rows"],
                "best_iteration": lgbm_outcome.meta["best_iteration"],
                "blend_weight_lightgbm": weight,
                "blend_valid_ndcg10_by_weight": {f"{w:.2f}": v for w, v in tried.items()},
                "lightgbm": {
                    k: lgbm_outcome.meta[k]
                    for k in ("params", "best_iteration", "feature_importance")
                },
                "validation": {**report, "model_key": "blend"},
            },
            _neural_text(nn_fit.prep, nn_fit.arch),
            {
                NETWORK_FILE: _network_bytes(nn_fit.final),
                BOOSTER_FILE: lgbm_outcome.booster.model_to_string().encode(),
            },
        )
    return out


def register_trained(models_dir: Path, trained: Trained) -> registry.ModelRecord:
    return registry.register(
        models_dir, REGISTRY_KIND[trained.kind], trained.model_text, trained.meta, trained.files
    )


def _load_network(record: registry.ModelRecord, device: torch.device) -> tuple:
    spec = json.loads(record.model_file.read_text())
    prep = Preprocessor(**spec["preprocessor"])
    arch = Architecture(**spec["architecture"])
    model = ListRanker(arch)
    state = torch.load(record.path / NETWORK_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), prep


def load_scorer(record: registry.ModelRecord, settings: Settings) -> Scorer:
    """The scorer of a registered model of any kind; with `neural.quantize`, the network
    scores on CPU with int8 dynamic quantization of its Linear layers."""
    kind = record.meta.get("model_kind", "lightgbm")
    features = record.meta["features"]
    if kind == "lightgbm":
        return LightGBMScorer(lgb.Booster(model_file=str(record.model_file)), features)
    device = resolve_device(settings.neural.device)
    if settings.neural.quantize:
        device = torch.device("cpu")
    model, prep = _load_network(record, device)
    if settings.neural.quantize:
        model = quantized(model)
    network = NeuralScorer(model, prep, device, settings.neural.num_threads)
    if kind == "neural":
        return network
    booster = lgb.Booster(model_file=str(record.path / BOOSTER_FILE))
    return BlendScorer(
        LightGBMScorer(booster, features), network, record.meta["blend_weight_lightgbm"]
    )
