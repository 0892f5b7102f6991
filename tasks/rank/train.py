"""Train the nightly LightGBM ranker on rolling windows (pure: frames in, model out).

Windows are as-of moments spaced `window_step_days` apart; the newest one's labels end at the
run's as_of. The ranker is fit on the older windows and stopped early on the newest; it is
then validated under the evaluation protocol beside the baselines, and finally refit on every
window with the early-stopped number of rounds. (Every window, not the newest n - 1: on the
validation folds before both development cuts the refit on all four beat the refit on the
newest three on every fold, benchmarks/results/refit_windows.md.)
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import polars as pl

from tasks.baselines.recommenders import popularity, repurchase
from tasks.constants import EVENT_TYPE, ITEM_ID, PURCHASE, TS, USER_ID
from tasks.features.build import feature_columns
from tasks.protocol.metrics import ranking_metrics
from tasks.protocol.split import evaluated_users, truth_window
from tasks.rank import lgbm
from tasks.rank.dataset import (
    LABEL,
    groups_with_positives,
    known_buyers,
    labelled_frame,
    shared_aggregates,
    training_as_of_dates,
)
from tasks.rank.recommend import BoosterScorer, recommend_with
from tasks.settings import Settings
from tasks.shards import in_sample, sample_fraction, sampled, shard_count, shard_users
from tasks.timeutil import events_before

log = logging.getLogger("nightrec.rank")
MIN_TRAIN_GROUPS = 5


@dataclass
class Windows:
    """Labelled training windows before a as_of, newest first."""

    frames: list[pl.DataFrame]  # customers with a purchase in the horizon, `_as_of` column
    used: list[dt.datetime]  # their as-of instants
    # The newest window's candidate frame for every known buyer, unlabelled. The validation
    # that follows (same as-of, same events) scores a subset of those customers, and a
    # customer's candidates and features do not depend on who else is scored, so it is read
    # from here instead of built again (a large catalog spends most of a window there). It is
    # handed out once and then dropped, so it does not stay in memory through training.
    newest_candidates: pl.DataFrame | None
    # Share of customers kept (`scale.max_train_lists`); 1.0 = everyone. Validation uses the
    # same hash sample, so the newest window's candidates still hold every validated customer.
    sample_fraction: float = 1.0

    def sample_meta(self) -> dict[str, Any]:
        return {
            "fraction": round(self.sample_fraction, 6),
            "lists": int(sum(f.get_column(USER_ID).n_unique() for f in self.frames)),
        }

    def take_candidates_for(self, users: pl.Series) -> pl.DataFrame | None:
        """The newest window's candidates of `users`, when it holds every one of them; the
        first call only (None after, and the caller builds them)."""
        frame, self.newest_candidates = self.newest_candidates, None
        if frame is None or not users.is_in(frame.get_column(USER_ID).unique().implode()).all():
            return None
        return frame.filter(pl.col(USER_ID).is_in(users.implode()))


class NotEnoughHistory(RuntimeError):
    """Too few labelled windows to train; the run falls back to a baseline."""


@dataclass(frozen=True)
class TrainOutcome:
    booster: lgb.Booster
    meta: dict[str, Any]
    early_booster: lgb.Booster | None = None  # stopped on the validation window, never fit on it


def validation_report(
    model_recs: dict[str, pl.DataFrame],
    events: pl.DataFrame,
    as_of: dt.datetime,
    settings: Settings,
    users: pl.Series,
) -> dict[str, Any]:
    """Protocol metrics on the validation window: the given models beside the baselines."""
    truth = truth_window(events, as_of, settings.horizon_days)
    past = events_before(events, as_of)
    k = settings.k
    candidates = {
        **model_recs,
        "popularity": popularity(past, users, as_of, k),
        "repurchase": repurchase(past, users, as_of, k),
    }
    return {
        "as_of": as_of.isoformat(),
        "horizon_days": settings.horizon_days,
        "k": k,
        "users": len(users),
        "metrics": {
            name: ranking_metrics(recs, truth, users, k) for name, recs in candidates.items()
        },
    }


def _validation_report(
    booster: lgb.Booster,
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    windows: Windows,
    settings: Settings,
    features: list[str],
) -> dict[str, Any]:
    """Protocol metrics on the validation window: the ranker beside the baselines."""
    as_of = windows.used[0]
    users = sampled(evaluated_users(events, as_of, settings.horizon_days), windows.sample_fraction)
    frame = windows.take_candidates_for(users)
    recs = recommend_with(
        BoosterScorer(booster, features), events, catalog, users, as_of, settings, frame
    )
    return validation_report({"lightgbm": recs}, events, as_of, settings, users)


def training_windows(
    events: pl.DataFrame, catalog: pl.DataFrame, as_of: dt.datetime, settings: Settings
) -> Windows:
    """Labelled windows before `as_of`, newest first, each with its `_as_of` column.
    Raises NotEnoughHistory when fewer than two have labelled customers.

    A shop with more customers than `scale.max_train_lists` allows keeps a hash sample of
    them (the same in every window), so training memory and time stop growing with the shop;
    each window is built in shards of customers within `scale.shard_memory_mib`."""
    cfg = settings.ranker
    events = events_before(events, as_of)
    dates = _window_dates(as_of, settings)
    fraction = training_sample_fraction(events, as_of, settings)
    if fraction < 1.0:
        log.info(
            "training on a %.1f%% hash sample of customers (scale.max_train_lists %s)",
            100 * fraction,
            f"{settings.scale.max_train_lists:,}",
        )
    frames: list[pl.DataFrame] = []
    used: list[dt.datetime] = []
    newest: pl.DataFrame | None = None
    for i, window_as_of in enumerate(dates, start=1):
        log.info("training window %d/%d: as-of %s", i, len(dates), f"{window_as_of:%Y-%m-%d}")
        users = sampled(known_buyers(events, window_as_of), fraction)
        labelled = as_read(_labelled_in_shards(events, catalog, users, window_as_of, settings))
        if newest is None:
            newest = labelled.drop(LABEL)
        frame = groups_with_positives(labelled)
        del labelled
        if frame.get_column(USER_ID).n_unique() < MIN_TRAIN_GROUPS:
            break  # older windows have even less history
        frames.append(frame.with_columns(pl.lit(window_as_of).alias("_as_of")))
        used.append(window_as_of)
    if len(frames) < 2 or newest is None:
        raise NotEnoughHistory(
            f"only {len(frames)} training window(s) with labelled customers "
            f"before {as_of:%Y-%m-%d}; "
            f"need 2 (history must span {settings.horizon_days + cfg.window_step_days} days)"
        )
    return Windows(frames, used, newest, fraction)


def as_read(frame: pl.DataFrame) -> pl.DataFrame:
    """Float features held as float32, the precision LightGBM bins and the network reads:
    half the memory of a training set, and the same LightGBM model (it casts to float32)."""
    floats = [c for c in feature_columns(frame) if frame.schema[c] == pl.Float64]
    return frame.with_columns(pl.col(floats).cast(pl.Float32))


def _window_dates(as_of: dt.datetime, settings: Settings) -> list[dt.datetime]:
    cfg = settings.ranker
    return training_as_of_dates(as_of, settings.horizon_days, cfg.n_windows, cfg.window_step_days)


def training_sample_fraction(
    purchases: pl.DataFrame, as_of: dt.datetime, settings: Settings
) -> float:
    """The share of customers a retrain at `as_of` keeps (`scale.max_train_lists` over the
    newest window's buyers); `purchases` may be every event or the purchases alone."""
    dates = _window_dates(as_of, settings)
    newest_buyers = known_buyers(purchases, dates[0]).len()
    return sample_fraction(newest_buyers, settings.scale.max_train_lists // len(dates))


def training_events(events: pl.LazyFrame, as_of: dt.datetime, settings: Settings) -> pl.DataFrame:
    """What a retrain at `as_of` reads of `events` (a scan of the snapshot): every customer's
    purchases, which the item-level aggregates, the labels and the sample need, and every
    event of the customers in the training sample. The windows, the validation and both
    kinds' fits see no other customer's views or carts, so they come out exactly as from all
    events, while memory follows the purchases and the sample instead of every event."""
    is_purchase = pl.col(EVENT_TYPE) == PURCHASE
    buyers = events.filter(is_purchase).select(USER_ID, EVENT_TYPE, TS).collect()
    fraction = training_sample_fraction(buyers, as_of, settings)
    del buyers
    if fraction >= 1.0:
        return events.collect()
    return events.filter(is_purchase | in_sample(fraction)).collect()


def _labelled_in_shards(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    users: pl.Series,
    as_of: dt.datetime,
    settings: Settings,
) -> pl.DataFrame:
    """`labelled_frame` of `users`, built a shard of customers at a time around aggregates
    shared by all (the same rows as in one piece)."""
    cfg = settings.candidates
    n_shards = shard_count(users.len(), cfg.max_per_user, settings.scale.shard_memory_mib)
    if n_shards == 1:
        return labelled_frame(events, catalog, users, as_of, settings.horizon_days, cfg)
    shared = shared_aggregates(events, catalog, as_of, cfg)
    parts = []
    for shard in shard_users(users, n_shards):
        own = events.filter(pl.col(USER_ID).is_in(shard.implode()))
        parts.append(labelled_frame(own, catalog, shard, as_of, settings.horizon_days, cfg, shared))
    return pl.concat(parts).sort(USER_ID, ITEM_ID)


def keyed(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Groups must not mix windows: a customer appears once per window."""
    return pl.concat(frames).with_columns(
        (pl.col(USER_ID) + pl.lit("@") + pl.col("_as_of").cast(pl.Utf8)).alias(USER_ID)
    )


def train_ranker(
    events: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: dt.datetime,
    settings: Settings,
    windows: Windows | None = None,
) -> TrainOutcome:
    """Train on events before `as_of` only. Raises NotEnoughHistory when it cannot.
    `windows` (from training_windows) saves rebuilding them when several models share them."""
    cfg = settings.ranker
    events = events_before(events, as_of)
    windows = windows or training_windows(events, catalog, as_of, settings)
    frames, used = windows.frames, windows.used
    features = feature_columns(frames[0].drop(LABEL))

    early = lgbm.fit(keyed(frames[1:]), features, cfg, settings.seed, valid=keyed(frames[:1]))
    log.info(
        "early stopping at %d rounds, valid ndcg@10 %.4f",
        early.best_iteration,
        early.valid_ndcg10 or 0,
    )
    validation = _validation_report(early.booster, events, catalog, windows, settings, features)
    final = lgbm.fit(
        keyed(frames), features, cfg, settings.seed, num_boost_round=early.best_iteration
    )
    meta = {
        "as_of": as_of.isoformat(),
        "train_windows": [d.isoformat() for d in used],
        "validation_window": used[0].isoformat(),
        "train_rows": int(sum(f.height for f in frames)),
        "train_sample": windows.sample_meta(),
        "best_iteration": early.best_iteration,
        "params": lgbm.booster_params(cfg, settings.seed),
        "candidates": settings.candidates.model_dump(),
        "features": features,
        "feature_importance": lgbm.feature_importance(final.booster),
        "validation": validation,
    }
    return TrainOutcome(final.booster, meta, early.booster)
