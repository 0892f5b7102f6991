"""What every model kind shares: the scorer protocol, the trained-model record, the kind
protocol, and the training context that lets kinds trained together share their windows,
fits and validation data.

A scorer maps a candidate frame (as of one moment) to a score per row; everything after
scoring (top-K, padding, publishing, metrics) is the same for every kind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from tasks.candidates.generate import MERGED_RANK
from tasks.constants import USER_ID
from tasks.features.build import feature_columns
from tasks.protocol.drift import feature_profiles
from tasks.protocol.split import evaluated_users
from tasks.rank import registry
from tasks.rank.dataset import LABEL, candidate_frame
from tasks.rank.recommend import Scorer, recommend_with
from tasks.rank.train import Windows, training_windows, validation_report
from tasks.settings import Settings
from tasks.shards import sampled
from tasks.timeutil import events_before

LIST_KEY = "_list_key"


@dataclass
class Trained:
    """One trained model: how it scores, what it saved, what the registry records."""

    kind: str
    scorer: Scorer
    meta: dict[str, Any]
    model_text: str
    files: dict[str, bytes] = field(default_factory=dict)


class ModelKind(Protocol):
    """One kind of model: how it trains (from a shared context) and loads back as a scorer.
    Adding a kind is one module implementing this plus one line in `tasks/rank/kinds/__init__`.
    """

    name: str  # what settings, the registry's meta and the reports call it
    registry_prefix: str  # versions are `<prefix>-<as_of>-<hash>`

    def train(self, ctx: TrainingContext) -> Trained: ...

    def load(self, record: registry.ModelRecord, settings: Settings) -> Scorer: ...


def with_list_key(frames: list[pl.DataFrame], max_len: int = 0) -> pl.DataFrame:
    """Windows stacked with one list key per (customer, window); with `max_len`, only each
    list's best-merged candidates, and only lists with a purchase."""
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
class TrainingContext:
    """The inputs of one training (events before `as_of`) and what the kinds trained on them
    share, each built once when first asked for: the labelled windows, the validation window's
    customers and candidates, and (in `shared`, by name) fits that several kinds reuse, such
    as the LightGBM booster of the lightgbm and blend kinds."""

    events: pl.DataFrame
    catalog: pl.DataFrame
    as_of: dt.datetime
    settings: Settings
    checkpoint_dir: Path | None = None
    shared: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = events_before(self.events, self.as_of)

    @cached_property
    def windows(self) -> Windows:
        """Raises NotEnoughHistory (tasks.rank.train) when there is too little history."""
        return training_windows(self.events, self.catalog, self.as_of, self.settings)

    @property
    def frames(self) -> list[pl.DataFrame]:
        return self.windows.frames

    @property
    def validation_as_of(self) -> dt.datetime:
        return self.windows.used[0]

    @cached_property
    def features(self) -> list[str]:
        return feature_columns(self.frames[0].drop(LABEL))

    @cached_property
    def validation_users(self) -> pl.Series:
        """The protocol's customers of the validation window, in the training's hash sample."""
        users = evaluated_users(self.events, self.validation_as_of, self.settings.horizon_days)
        return sampled(users, self.windows.sample_fraction)

    @cached_property
    def validation_frame(self) -> pl.DataFrame:
        users = self.validation_users
        reused = self.windows.take_candidates_for(users)
        if reused is not None:
            return reused
        as_of = self.validation_as_of
        past = events_before(self.events, as_of)
        return candidate_frame(past, self.catalog, users, as_of, self.settings.candidates)

    def validate(self, name: str, early_scorer: Scorer) -> dict[str, Any]:
        """The protocol metrics on the validation window of a scorer that never trained on it,
        beside the baselines; `model_key` names the scorer's row."""
        as_of, users = self.validation_as_of, self.validation_users
        recs = recommend_with(
            early_scorer,
            self.events,
            self.catalog,
            users,
            as_of,
            self.settings,
            self.validation_frame,
        )
        report = validation_report({name: recs}, self.events, as_of, self.settings, users)
        return {**report, "model_key": name}

    def base_meta(self) -> dict[str, Any]:
        """What every kind's meta records about its training."""
        used = self.windows.used
        return {
            "as_of": self.as_of.isoformat(),
            "train_windows": [d.isoformat() for d in used[:-1]],
            "validation_window": used[0].isoformat(),
            "candidates": self.settings.candidates.model_dump(),
            "features": self.features,
            "train_sample": self.windows.sample_meta(),
            "feature_profile": self.feature_profile(),
        }

    def feature_profile(self, max_rows: int = 50_000) -> dict[str, Any]:
        """The training windows' feature distributions (quantile bins and shares), the
        reference of the run's feature drift check (tasks/monitor)."""
        frame = pl.concat([f.select(self.features) for f in self.frames], how="vertical_relaxed")
        if frame.height > max_rows:
            frame = frame.sample(max_rows, seed=self.settings.seed)
        return feature_profiles(frame, self.features, self.settings.monitor.drift_bins)
