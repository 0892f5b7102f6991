"""Learning-to-rank data: candidates + features for an as-of moment, labelled by the horizon."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from tasks.candidates.generate import (
    CandidateReport,
    SharedCandidates,
    generate_candidates,
    shared_candidates,
)
from tasks.constants import EVENT_TYPE, ITEM_ID, PURCHASE, TS, USER_ID
from tasks.features.build import SharedFeatures, build_features, shared_features
from tasks.settings import CandidateSettings
from tasks.timeutil import events_before

LABEL = "label"


def known_buyers(events: pl.DataFrame, as_of: dt.datetime) -> pl.Series:
    """Customers with a purchase before as_of, sorted."""
    buyers = events.filter((pl.col(EVENT_TYPE) == PURCHASE) & (pl.col(TS) < as_of))
    return buyers.get_column(USER_ID).unique().sort()


def horizon_labels(events: pl.DataFrame, as_of: dt.datetime, horizon_days: int) -> pl.DataFrame:
    """user_id, item_id, label=1 for items purchased in [as_of, as_of + horizon)."""
    end = as_of + dt.timedelta(days=horizon_days)
    window = events.filter(
        (pl.col(EVENT_TYPE) == PURCHASE) & (pl.col(TS) >= as_of) & (pl.col(TS) < end)
    )
    return (
        window.select(USER_ID, ITEM_ID)
        .unique()
        .with_columns(pl.lit(1, dtype=pl.Int32).alias(LABEL))
    )


def training_as_of_dates(
    as_of: dt.datetime, horizon_days: int, n_windows: int, step_days: int
) -> list[dt.datetime]:
    """Newest first; the newest window's labels end exactly at as-of, so none leak."""
    newest = as_of - dt.timedelta(days=horizon_days)
    return [newest - dt.timedelta(days=i * step_days) for i in range(n_windows)]


@dataclass(frozen=True)
class SharedAggregates:
    """Everything item- or category-level that candidates and features need at one as-of,
    computed once from every customer's events; with it, a shard of customers needs only
    its own events and gets exactly its rows of the whole frame."""

    as_of: dt.datetime
    candidates: SharedCandidates
    features: SharedFeatures


def shared_aggregates(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: dt.datetime,
    cfg: CandidateSettings,
    report: CandidateReport | None = None,
) -> SharedAggregates:
    past = events_before(events, as_of)
    return SharedAggregates(
        as_of,
        shared_candidates(past, as_of, cfg, report),
        shared_features(past, catalog, as_of),
    )


def candidate_frame(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    users: pl.Series,
    as_of: dt.datetime,
    cfg: CandidateSettings,
    report: CandidateReport | None = None,
    shared: SharedAggregates | None = None,
    anchors: bool = False,
) -> pl.DataFrame:
    """Candidates with features for `users` as of `as_of` (no labels). `report` (when given)
    receives the candidate step's notes (a source that had to degrade) for the manifest.
    With `shared` (built from every customer's events), `events` need only hold `users`';
    `anchors` keeps what an explanation names (generate_candidates)."""
    past = events_before(events, as_of)
    if shared is None:
        shared = shared_aggregates(past, catalog, as_of, cfg, report)
    candidates = generate_candidates(
        past, users, as_of, cfg, report, shared.candidates, anchors=anchors
    )
    return build_features(past, candidates, catalog, as_of, shared.features)


def labelled_frame(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    users: pl.Series,
    as_of: dt.datetime,
    horizon_days: int,
    cfg: CandidateSettings,
    shared: SharedAggregates | None = None,
) -> pl.DataFrame:
    """candidate_frame plus the 0/1 label from the horizon after as_of."""
    frame = candidate_frame(events, catalog, users, as_of, cfg, shared=shared)
    labels = horizon_labels(events, as_of, horizon_days)
    return frame.join(labels, on=[USER_ID, ITEM_ID], how="left").with_columns(
        pl.col(LABEL).fill_null(0)
    )


def groups_with_positives(frame: pl.DataFrame) -> pl.DataFrame:
    """Only customers with at least one relevant candidate teach a ranker anything."""
    return frame.filter(pl.col(LABEL).max().over(USER_ID) > 0)
