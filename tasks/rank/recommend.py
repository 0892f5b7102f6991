"""Top-K lists from any scorer: the one path from a candidate frame to published-shape lists
(nightly validation, backtests, tuning, benchmarks)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import lightgbm as lgb
import numpy as np
import polars as pl

from tasks.candidates.dp_popular import fallback_popular
from tasks.candidates.generate import CandidateReport
from tasks.constants import ITEM_ID, SCORE, USER_ID
from tasks.rank import lgbm
from tasks.rank.dataset import candidate_frame
from tasks.rank.topk import top_k
from tasks.settings import Settings
from tasks.timeutil import events_before


class Scorer(Protocol):
    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        """A score per row of a candidate frame built as of `as_of` (higher = better)."""
        ...


@dataclass(frozen=True)
class BoosterScorer:
    """A LightGBM booster over named feature columns."""

    booster: lgb.Booster
    features: list[str]

    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        return lgbm.predict(self.booster, frame, self.features)


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
    report: CandidateReport | None = None,
) -> pl.DataFrame:
    """Top-K per user as of `as_of`, padded with popular items (as train.recommend does).

    `frame` is the users' candidate frame when the caller already built it; `allowed_items`
    (when given) limits what may be recommended (catalog less forbidden items);
    `check_features` sees the feature frame before anything is scored; `report` receives the
    candidate step's notes (a source that worked in its bounded form).
    """
    past = events_before(events, as_of)
    if frame is None:
        frame = candidate_frame(
            past, catalog, users, as_of, settings.candidates, report, anchors=True
        )
    if check_features is not None:
        check_features(frame)
    # Ranked over every allowed item first: the filter must not leave fewer than 2k to pad with.
    popular = fallback_popular(events, as_of, settings, catalog.get_column(ITEM_ID), allowed_items)
    if allowed_items is not None:
        frame = frame.filter(pl.col(ITEM_ID).is_in(allowed_items.implode()))
    scored = scored_frame(scorer, frame, past, as_of)
    return top_k(scored, users, popular, settings.k)
