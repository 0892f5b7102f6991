"""The LightGBM objective: mean protocol NDCG@K of the nightly trainer replayed at earlier dates.

Fold f replays the nightly trainer at the cutoff A_f = as-of - H - f * step on the
`n_windows` labelled windows before A_f: fit on the older ones, stopped early on the newest
(whose labels end at A_f). That early-stopped model's padded top-K at A_f is scored under the
protocol against the purchases of [A_f, A_f + H), a horizon no fit and no early stopping saw.
So a trial is judged the way the reported test judges a model, not on the window it was
stopped on. (The nightly run then refits on the newest windows for the same rounds; the
replay leaves that refit out, which halves a trial's cost.) All of it lies before the study's
as-of, so the window a report quotes is never seen. Folds share windows (the step is the
windows' step); candidates and features of every window are built once per study (`prepare`,
cached on disk by fingerprint); a trial is only LightGBM fits.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from tasks.candidates.generate import popular_items
from tasks.constants import ITEM_ID, TS, USER_ID
from tasks.errors import NightrecError
from tasks.evaluate.metrics import ranking_metrics
from tasks.evaluate.protocol import evaluated_users, truth_window
from tasks.features.build import feature_columns
from tasks.features.snapshot import Snapshot
from tasks.rank import lgbm, registry
from tasks.rank.dataset import (
    LABEL,
    candidate_frame,
    groups_with_positives,
    known_buyers,
    labelled_frame,
    training_as_of_dates,
)
from tasks.rank.gate import promotion_gate
from tasks.rank.params import TUNED_PARAMS_KEY, nightly_carried, with_ranker_params
from tasks.rank.topk import top_k
from tasks.rank.train import MIN_TRAIN_GROUPS, keyed, score_candidates, train_ranker
from tasks.settings import RankerSettings, Settings
from tasks.tune.objective import SPACES_DIR, PruneHook, TrialOutcome
from tasks.tune.space import SearchSpace, SpaceError

AS_OF_COL = "_as_of"
FINGERPRINT_FILE = "fingerprint.json"
LAYOUT = 2  # version of the cached windows' layout; a change rebuilds old caches
# Not searchable: they shape the windows (so the data) or are run plumbing, not the model.
FIXED_FIELDS = {"n_windows", "window_step_days", "retrain_every_days", "gate_tolerance"}
FIXED_FIELDS |= {"num_threads", "kind"}


class NotEnoughWindows(NightrecError, RuntimeError):
    """The history before as-of is too short for the asked validation folds."""

    hint = "tune at a later --as-of or with fewer tune.validation_folds"


def _fingerprint(settings: Settings, snapshot: Snapshot) -> dict[str, Any]:
    cfg = settings.ranker
    return {
        "layout": LAYOUT,
        "cutoff": snapshot.cutoff.isoformat(),
        "events": snapshot.n_events,
        "watermark": snapshot.watermark.isoformat() if snapshot.watermark else None,
        "horizon_days": settings.horizon_days,
        "k": settings.k,
        "candidates": settings.candidates.model_dump(),
        "n_windows": cfg.n_windows,
        "window_step_days": cfg.window_step_days,
        "validation_folds": settings.tune.validation_folds,
    }


def fold_cutoffs(cutoff: dt.datetime, settings: Settings) -> list[dt.datetime]:
    """The replayed nightly cutoffs, newest first: fold f scores [A_f, A_f + H) < cutoff."""
    step = dt.timedelta(days=settings.ranker.window_step_days)
    newest = cutoff - dt.timedelta(days=settings.horizon_days)
    return [newest - f * step for f in range(settings.tune.validation_folds)]


def build_windows(
    events: pl.DataFrame, catalog: pl.DataFrame, cutoff: dt.datetime, settings: Settings, out: Path
) -> dict[str, Any]:
    """Write every labelled window and every fold's scoring inputs under `out`.

    Window i has as-of A_0 - H - i * step; fold f uses windows f .. f + n_windows - 1
    (newest first, exactly the windows a nightly run at A_f would build)."""
    cfg, horizon, folds = settings.ranker, settings.horizon_days, settings.tune.validation_folds
    events = events.filter(pl.col(TS) < cutoff)
    cutoffs = fold_cutoffs(cutoff, settings)
    n_windows = cfg.n_windows + folds - 1
    dates = training_as_of_dates(cutoffs[0], horizon, n_windows, cfg.window_step_days)
    features: list[str] | None = None
    (out / "windows").mkdir(parents=True)
    for i, as_of in enumerate(dates):
        frame = groups_with_positives(
            labelled_frame(
                events, catalog, known_buyers(events, as_of), as_of, horizon, settings.candidates
            )
        )
        if frame.get_column(USER_ID).n_unique() < MIN_TRAIN_GROUPS:
            raise NotEnoughWindows(
                f"window as-of {as_of:%Y-%m-%d} has fewer than {MIN_TRAIN_GROUPS} labelled "
                f"customers: {folds} validation fold(s) x {cfg.n_windows} windows need "
                f"{2 * horizon + (n_windows - 1) * cfg.window_step_days} days of history "
                f"before {cutoff:%Y-%m-%d}; lower tune.validation_folds"
            )
        features = features or feature_columns(frame.drop(LABEL))
        frame.with_columns(pl.lit(as_of).alias(AS_OF_COL)).write_parquet(
            out / "windows" / f"{i}.parquet"
        )
    for fold, as_of in enumerate(cutoffs):
        folder = out / "folds" / str(fold)
        folder.mkdir(parents=True)
        users = evaluated_users(events, as_of, horizon)
        pl.DataFrame({USER_ID: users}).write_parquet(folder / "users.parquet")
        truth_window(events, as_of, horizon).write_parquet(folder / "truth.parquet")
        candidate_frame(events, catalog, users, as_of, settings.candidates).write_parquet(
            folder / "score.parquet"
        )
        popular = popular_items(events, as_of, settings.candidates.popular_days, 2 * settings.k)
        popular.select(ITEM_ID).write_parquet(folder / "popular.parquet")
    return {
        "windows": [d.isoformat() for d in dates],
        "folds": [
            {
                "validate": cutoffs[f].isoformat(),
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


def fold_ndcg(
    data_dir: Path, fold: int, cfg: RankerSettings, settings: Settings, features: list[str]
) -> tuple[float, int]:
    """(protocol NDCG@K at the fold's cutoff of the nightly trainer's early-stopped model
    there, its rounds)."""
    frames = [
        pl.read_parquet(data_dir / "windows" / f"{i}.parquet")
        for i in range(fold, fold + settings.ranker.n_windows)
    ]
    early = lgbm.fit(keyed(frames[1:]), features, cfg, settings.seed, valid=keyed(frames[:1]))
    folder = data_dir / "folds" / str(fold)
    users = pl.read_parquet(folder / "users.parquet").get_column(USER_ID)
    scored = score_candidates(early.booster, pl.read_parquet(folder / "score.parquet"), features)
    popular = pl.read_parquet(folder / "popular.parquet").get_column(ITEM_ID)
    recs = top_k(scored, users, popular, settings.k)
    truth = pl.read_parquet(folder / "truth.parquet")
    metrics = ranking_metrics(recs, truth, users, settings.k)
    return metrics[f"ndcg@{settings.k}"], early.best_iteration


class LightGBMObjective:
    model = "lightgbm"
    direction = "maximize"

    def default_space(self) -> Path:
        return SPACES_DIR / "lightgbm.yml"

    def check_space(self, space: SearchSpace) -> None:
        allowed = set(RankerSettings.model_fields) - FIXED_FIELDS
        unknown = sorted(set(space.params) - allowed)
        if unknown:
            raise SpaceError(
                f"not LightGBM ranker parameters: {', '.join(unknown)} "
                f"(searchable: {', '.join(sorted(allowed))})"
            )

    def default_params(self, settings: Settings) -> dict[str, Any]:
        return settings.ranker.model_dump()

    def prepare(self, settings: Settings, snapshot: Snapshot, data_dir: Path) -> dict[str, Any]:
        return replace_cached(
            data_dir,
            _fingerprint(settings, snapshot),
            lambda out: build_windows(
                snapshot.events(), snapshot.catalog(), snapshot.cutoff, settings, out
            ),
        )

    def evaluate(
        self, params: dict[str, Any], settings: Settings, data_dir: Path, prune: PruneHook
    ) -> TrialOutcome:
        summary = json.loads((data_dir / FINGERPRINT_FILE).read_text())["summary"]
        threads = settings.tune.threads_per_trial or max(
            1, (os.cpu_count() or 1) // settings.tune.parallel
        )
        cfg = with_ranker_params(settings, {**params, "num_threads": threads}).ranker
        values, rounds = [], []
        for fold in range(len(summary["folds"])):
            ndcg, best_iteration = fold_ndcg(data_dir, fold, cfg, settings, summary["features"])
            values.append(ndcg)
            rounds.append(best_iteration)
            prune(fold, statistics.fmean(values))
        return TrialOutcome(
            statistics.fmean(values),
            {"fold_ndcg": [round(v, 6) for v in values], "best_iterations": rounds},
        )

    def register_best(
        self,
        settings: Settings,
        snapshot: Snapshot,
        params: dict[str, Any],
        tuning: dict[str, Any],
    ) -> dict[str, Any]:
        """Train as the nightly run would, with the tuned parameters; register; gate."""
        tuned = with_ranker_params(settings, params)
        outcome = train_ranker(snapshot.events(), snapshot.catalog(), snapshot.cutoff, tuned)
        models_dir = settings.models_dir
        # The champion's tuned network parameters ride along, so a later blend retrain that
        # takes its parameters from this model still has them.
        before = registry.serving_model(models_dir, snapshot.cutoff)
        carried = nightly_carried(settings, before.meta if before else None)
        carried.pop(TUNED_PARAMS_KEY, None)
        meta = {**outcome.meta, **carried, TUNED_PARAMS_KEY: params, "tuning": tuning}
        record = registry.register(models_dir, "lgbm", outcome.booster.model_to_string(), meta)
        serving = registry.serving_model(models_dir, snapshot.cutoff)
        validation = record.meta["validation"]
        ndcg = validation["metrics"]["lightgbm"][f"ndcg@{validation['k']}"]
        if serving is not None and serving.version == record.version:
            return {
                "version": record.version,
                "promoted": True,
                "reason": "already champion",
                "validation_ndcg": ndcg,
            }
        decision = promotion_gate(
            record.meta, serving.meta if serving else None, settings.ranker.gate_tolerance
        )
        if decision.promote:
            registry.promote(models_dir, record.version)
        return {
            "version": record.version,
            "promoted": decision.promote,
            "reason": decision.reason,
            "validation_ndcg": ndcg,
        }
