"""The LightGBM objective: mean protocol NDCG@K of the nightly trainer replayed at earlier dates.

Fold f replays the nightly trainer at as-of A_f = as-of - H - f * step on the
`n_windows` labelled windows before A_f: fit on the older ones, stopped early on the newest
(whose labels end at A_f). That early-stopped model's padded top-K at A_f is scored under the
protocol against the purchases of [A_f, A_f + H), a horizon no fit and no early stopping saw.
So a trial is judged the way the reported test judges a model, not on the window it was
stopped on. (The nightly run then refits on every window for the same rounds; the
replay leaves that refit out, which halves a trial's cost.) All of it lies before the study's
as-of, so the window a report quotes is never seen. Folds share windows (the step is the
windows' step); candidates and features of every window are built once per study (`prepare`,
cached on disk by fingerprint); a trial is only LightGBM fits.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

import polars as pl

from tasks.features.snapshot import Snapshot
from tasks.rank import lgbm, registry
from tasks.rank.kinds import Trained
from tasks.rank.kinds.lightgbm import LightGBMScorer
from tasks.rank.params import TUNED_PARAMS_KEY, nightly_carried, with_ranker_params
from tasks.rank.promotion import register_and_gate
from tasks.rank.train import keyed, train_ranker
from tasks.settings import RankerSettings, Settings
from tasks.tune.folds import (
    FINGERPRINT_FILE,
    FoldTarget,
    build_windows,
    replace_cached,
    windows_fingerprint,
)
from tasks.tune.objective import SPACES_DIR, PruneHook, TrialOutcome
from tasks.tune.space import SearchSpace, SpaceError

# Not searchable: they shape the windows (so the data) or are run plumbing, not the model.
FIXED_FIELDS = {"n_windows", "window_step_days", "retrain_every_days", "gate_tolerance"}
FIXED_FIELDS |= {"num_threads", "kind"}


def fold_ndcg(
    data_dir: Path, fold: int, cfg: RankerSettings, settings: Settings, features: list[str]
) -> tuple[float, int]:
    """(protocol NDCG@K at the fold's as_of of the nightly trainer's early-stopped model
    there, its rounds)."""
    frames = [
        pl.read_parquet(data_dir / "windows" / f"{i}.parquet")
        for i in range(fold, fold + settings.ranker.n_windows)
    ]
    early = lgbm.fit(keyed(frames[1:]), features, cfg, settings.seed, valid=keyed(frames[:1]))
    target = FoldTarget.load(data_dir / "folds" / str(fold))
    scores = lgbm.predict(early.booster, target.frame, features)
    return target.ndcg(scores, settings.k), early.best_iteration


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
            windows_fingerprint(settings, snapshot),
            lambda out: build_windows(
                snapshot.events(), snapshot.catalog(), snapshot.as_of, settings, out
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
        outcome = train_ranker(snapshot.events(), snapshot.catalog(), snapshot.as_of, tuned)
        models_dir = settings.models_dir
        # The champion's tuned network parameters ride along, so a later blend retrain that
        # takes its parameters from this model still has them.
        before = registry.serving_model(models_dir, snapshot.as_of)
        carried = nightly_carried(settings, before.meta if before else None)
        carried.pop(TUNED_PARAMS_KEY, None)
        meta = {**outcome.meta, **carried, TUNED_PARAMS_KEY: params, "tuning": tuning}
        scorer = LightGBMScorer(outcome.booster, outcome.meta["features"])
        trained = Trained("lightgbm", scorer, meta, outcome.booster.model_to_string())
        gate = register_and_gate(
            models_dir, trained, snapshot.as_of, settings.ranker.gate_tolerance
        )
        return gate.summary()
