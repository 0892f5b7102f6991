"""Fold machinery shared by the tuning objectives: which nightly as-of instants a study replays,
the labelled windows and scoring inputs built once per study, and the cache they live in.

Fold f replays the nightly trainer at A_f = as-of - H - f * step; folds share windows (the step
is the windows' step). Everything is built once per study into a folder keyed by a fingerprint
of the inputs (`replace_cached`), so a resumed study reuses it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tasks.candidates.generate import popular_items
from tasks.constants import ITEM_ID, SCORE, USER_ID
from tasks.errors import NightrecError
from tasks.features.build import feature_columns
from tasks.features.snapshot import Snapshot
from tasks.protocol.metrics import ranking_metrics
from tasks.protocol.split import evaluated_users, truth_window
from tasks.rank.dataset import (
    LABEL,
    candidate_frame,
    groups_with_positives,
    known_buyers,
    labelled_frame,
    training_as_of_dates,
)
from tasks.rank.topk import top_k
from tasks.rank.train import MIN_TRAIN_GROUPS
from tasks.settings import Settings
from tasks.timeutil import events_before

AS_OF_COL = "_as_of"
FINGERPRINT_FILE = "fingerprint.json"
LAYOUT = 2  # version of the cached windows' layout; a change rebuilds old caches


class NotEnoughWindows(NightrecError, RuntimeError):
    """The history before as-of is too short for the asked validation folds."""

    hint = "tune at a later --as-of or with fewer tune.validation_folds"


def windows_fingerprint(settings: Settings, snapshot: Snapshot) -> dict[str, Any]:
    cfg = settings.ranker
    return {
        "layout": LAYOUT,
        "as_of": snapshot.as_of.isoformat(),
        "events": snapshot.n_events,
        "watermark": snapshot.watermark.isoformat() if snapshot.watermark else None,
        "horizon_days": settings.horizon_days,
        "k": settings.k,
        "candidates": settings.candidates.model_dump(),
        "n_windows": cfg.n_windows,
        "window_step_days": cfg.window_step_days,
        "validation_folds": settings.tune.validation_folds,
    }


def fold_as_of_list(as_of: dt.datetime, settings: Settings) -> list[dt.datetime]:
    """The replayed nightly runs' as-of instants A_f, newest first: fold f scores
    [A_f, A_f + H), which ends at or before the study's `as_of`."""
    step = dt.timedelta(days=settings.ranker.window_step_days)
    newest = as_of - dt.timedelta(days=settings.horizon_days)
    return [newest - f * step for f in range(settings.tune.validation_folds)]


def build_windows(
    events: pl.DataFrame, catalog: pl.DataFrame, as_of: dt.datetime, settings: Settings, out: Path
) -> dict[str, Any]:
    """Write every labelled window and every fold's scoring inputs under `out`.

    Window i has as-of A_0 - H - i * step; fold f uses windows f .. f + n_windows - 1
    (newest first, exactly the windows a nightly run at A_f would build)."""
    cfg, horizon, folds = settings.ranker, settings.horizon_days, settings.tune.validation_folds
    events = events_before(events, as_of)
    fold_as_ofs = fold_as_of_list(as_of, settings)
    n_windows = cfg.n_windows + folds - 1
    dates = training_as_of_dates(fold_as_ofs[0], horizon, n_windows, cfg.window_step_days)
    features: list[str] | None = None
    (out / "windows").mkdir(parents=True)
    for i, window_as_of in enumerate(dates):
        frame = groups_with_positives(
            labelled_frame(
                events,
                catalog,
                known_buyers(events, window_as_of),
                window_as_of,
                horizon,
                settings.candidates,
            )
        )
        if frame.get_column(USER_ID).n_unique() < MIN_TRAIN_GROUPS:
            raise NotEnoughWindows(
                f"window as-of {window_as_of:%Y-%m-%d} has fewer than {MIN_TRAIN_GROUPS} labelled "
                f"customers: {folds} validation fold(s) x {cfg.n_windows} windows need "
                f"{2 * horizon + (n_windows - 1) * cfg.window_step_days} days of history "
                f"before {as_of:%Y-%m-%d}; lower tune.validation_folds"
            )
        features = features or feature_columns(frame.drop(LABEL))
        frame.with_columns(pl.lit(window_as_of).alias(AS_OF_COL)).write_parquet(
            out / "windows" / f"{i}.parquet"
        )
    for fold, fold_as_of in enumerate(fold_as_ofs):
        folder = out / "folds" / str(fold)
        folder.mkdir(parents=True)
        users = evaluated_users(events, fold_as_of, horizon)
        pl.DataFrame({USER_ID: users}).write_parquet(folder / "users.parquet")
        truth_window(events, fold_as_of, horizon).write_parquet(folder / "truth.parquet")
        candidate_frame(events, catalog, users, fold_as_of, settings.candidates).write_parquet(
            folder / "score.parquet"
        )
        popular = popular_items(
            events, fold_as_of, settings.candidates.popular_days, 2 * settings.k
        )
        popular.select(ITEM_ID).write_parquet(folder / "popular.parquet")
    return {
        "windows": [d.isoformat() for d in dates],
        "folds": [
            {
                "as_of": fold_as_ofs[f].isoformat(),
                "stop_on": dates[f].isoformat(),
                "train": [d.isoformat() for d in dates[f + 1 : f + cfg.n_windows]],
                "window_index": list(range(f, f + cfg.n_windows)),
            }
            for f in range(folds)
        ],
        "features": features,
    }


def replace_cached(
    data_dir: Path, fingerprint: dict[str, Any], build: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """`build(staging)` once per fingerprint, swapped in whole; a rerun with the same inputs
    reuses the folder. Returns the build's summary with `reused`."""
    marker = data_dir / FINGERPRINT_FILE
    if marker.is_file():
        stored = json.loads(marker.read_text())
        if stored["fingerprint"] == fingerprint:
            return {**stored["summary"], "reused": True}
    staging = data_dir.with_name(f".{data_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    summary = build(staging)
    (staging / FINGERPRINT_FILE).write_text(
        json.dumps({"fingerprint": fingerprint, "summary": summary}, indent=2)
    )
    shutil.rmtree(data_dir, ignore_errors=True)
    os.replace(staging, data_dir)
    return {**summary, "reused": False}


@dataclass(frozen=True)
class FoldTarget:
    """A fold's protocol scoring inputs: its candidate frame, evaluated customers, truth and
    popular items to pad with. Every objective scores a fold through `ndcg`: the padded
    top-K that the scores give, under the protocol's metric."""

    frame: pl.DataFrame
    users: pl.Series
    truth: pl.DataFrame
    popular: pl.Series

    @classmethod
    def load(cls, folder: Path) -> FoldTarget:
        return cls(
            pl.read_parquet(folder / "score.parquet"),
            pl.read_parquet(folder / "users.parquet").get_column(USER_ID),
            pl.read_parquet(folder / "truth.parquet"),
            pl.read_parquet(folder / "popular.parquet").get_column(ITEM_ID),
        )

    def ndcg(self, scores: np.ndarray, k: int) -> float:
        """Protocol NDCG@k of the padded top-k that `scores` (one per frame row) give."""
        scored = self.frame.select(USER_ID, ITEM_ID).with_columns(
            pl.Series(SCORE, np.asarray(scores, dtype=np.float64))
        )
        recs = top_k(scored, self.users, self.popular, k)
        return ranking_metrics(recs, self.truth, self.users, k)[f"ndcg@{k}"]
