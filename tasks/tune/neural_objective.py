"""The objectives of the neural ranker and the blend (`nightrec tune --model neural|blend`).

Same folds as the LightGBM objective (`build_windows`): fold f replays the nightly trainer at
as-of A_f on the windows before it, built once per study. A trial trains the network on
each fold exactly as the nightly trainer's early-stopping run at A_f does (`fit_neural`, same
windows, same events before A_f, same early stopping on the newest window, whose labels end
at A_f) and, after every epoch, scores the fold under the protocol: padded top-K of the
evaluated customers at A_f, NDCG@K against their purchases in [A_f, A_f + H), a horizon no fit
saw (what the LightGBM objective scores). After `tune.prune_warmup_epochs` epochs of a fold,
the fold's best value so far goes to the pruner at step `fold * max_epochs + epoch - 1`, so
the steps of every trial line up and grow across folds. A
fold's value is that of the epoch early stopping keeps (the weights the nightly run would
keep); the trial's value is the mean over folds.

The blend objective scores the blend of LightGBM (the parameters a nightly retrain would use:
the settings' ranker with the serving champion's tuned ones) and the trial's network. Per fold,
LightGBM is fit once per study (in `prepare`, early-stopped on the validation window as
`train_ranker` does); the weight is chosen after every epoch as the nightly trainer does
(`blend.choose_weight` on the labelled validation window, scored by models that never trained
on it), then the blended top-K is scored like the network's.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from tasks.constants import SCORE, USER_ID
from tasks.features.snapshot import Snapshot
from tasks.rank import lgbm, registry
from tasks.rank.dataset import LABEL
from tasks.rank.kinds import LIST_KEY, fit_neural, train_models, with_list_key
from tasks.rank.neural import blend as blending
from tasks.rank.neural.data import Preprocessor, build_tensors
from tasks.rank.neural.train import predict, resolve_device
from tasks.rank.params import (
    TUNED_FROM_KEY,
    TUNED_NEURAL_KEY,
    nightly_carried,
    with_carried,
    with_neural_params,
)
from tasks.rank.promotion import register_and_gate
from tasks.rank.train import keyed
from tasks.settings import NeuralSettings, Settings
from tasks.timeutil import events_before
from tasks.tune.folds import (
    FINGERPRINT_FILE,
    FoldTarget,
    build_windows,
    replace_cached,
    windows_fingerprint,
)
from tasks.tune.objective import SPACES_DIR, PruneHook, TrialOutcome
from tasks.tune.space import SearchSpace, SpaceError

# Not searchable: where and how fast it runs, the epoch budget and early stopping (the
# pruner's steps are epochs), what happens after the search (refit, quantized scoring).
NEURAL_FIXED = {"device", "num_threads", "quantize", "max_epochs", "patience", "refit"}
NEURAL_FIXED |= {"blend_grid"}
EVENTS_FILE = "events.parquet"
LGBM_VALID_FILE = "lightgbm_valid.parquet"  # LightGBM's score per validation-window row
LGBM_SCORE_FILE = "lightgbm_score.parquet"  # ... per row of the fold's candidate frame
# torch's RNG, thread count and deterministic switch are process-wide: two networks training
# at once in one process (the flow's thread pool) would not be reproducible. One at a time per
# process; a Dask cluster runs trials in separate processes and so in parallel.
_TORCH_LOCK = threading.Lock()


def searchable() -> set[str]:
    return set(NeuralSettings.model_fields) - NEURAL_FIXED


class FoldData:
    """What one fold of a trial reads from the study's data folder."""

    def __init__(self, data_dir: Path, fold: int, settings: Settings, events: pl.DataFrame):
        summary = json.loads((data_dir / FINGERPRINT_FILE).read_text())["summary"]
        self.windows = _windows(data_dir, fold, settings.ranker.n_windows)
        # The replayed nightly run's as_of: it sees the events before it, and is scored on
        # the horizon after it.
        self.as_of = dt.datetime.fromisoformat(summary["folds"][fold]["as_of"])
        self.events = events_before(events, self.as_of)
        self.folder = data_dir / "folds" / str(fold)
        self.target = FoldTarget.load(self.folder)


def _windows(data_dir: Path, fold: int, n_windows: int) -> list[pl.DataFrame]:
    """The fold's windows, newest (its validation window) first."""
    return [
        pl.read_parquet(data_dir / "windows" / f"{i}.parquet")
        for i in range(fold, fold + n_windows)
    ]


class EpochScorer:
    """Scores the network after each epoch on the fold's validation window (protocol NDCG@K).
    Tensors are built once per fold (the preprocessor is fitted once per fold)."""

    def __init__(self, fold: FoldData, settings: Settings, device: torch.device) -> None:
        self.fold, self.settings, self.device = fold, settings, device
        self._prep: Preprocessor | None = None
        self._score_t = None
        self.values: list[float] = []
        self.details: list[dict[str, float]] = []

    def _tensors(self, prep: Preprocessor) -> None:
        if self._prep is not prep:
            self._prep = prep
            past = events_before(self.fold.events, self.fold.as_of)
            self._score_t = build_tensors(
                self.fold.target.frame,
                past,
                prep,
                list_key=USER_ID,
                as_of=self.fold.as_of,
                label=None,
            )

    def network_scores(self, model: torch.nn.Module, prep: Preprocessor) -> np.ndarray:
        self._tensors(prep)
        return predict(model, self._score_t, self.device)

    def __call__(self, model: torch.nn.Module, prep: Preprocessor) -> float:
        value = self.fold.target.ndcg(self.network_scores(model, prep), self.settings.k)
        self.values.append(value)
        self.details.append({"neural": value})
        return value


class BlendEpochScorer(EpochScorer):
    """The blend of the fold's LightGBM and the epoch's network, its weight chosen on the
    labelled validation window as the nightly trainer chooses it."""

    def __init__(self, fold: FoldData, settings: Settings, device: torch.device) -> None:
        super().__init__(fold, settings, device)
        self.valid = with_list_key(fold.windows[:1])
        self.lgbm_valid = pl.read_parquet(fold.folder / LGBM_VALID_FILE)[SCORE].to_numpy()
        self.lgbm_score = pl.read_parquet(fold.folder / LGBM_SCORE_FILE)[SCORE].to_numpy()
        self._valid_t = None
        self._valid_prep: Preprocessor | None = None

    def __call__(self, model: torch.nn.Module, prep: Preprocessor) -> float:
        if self._valid_prep is not prep:
            self._valid_prep = prep
            self._valid_t = build_tensors(self.valid, self.fold.events, prep, list_key=LIST_KEY)
        weight, _ = blending.choose_weight(
            self.valid.get_column(LIST_KEY),
            self.lgbm_valid,
            predict(model, self._valid_t, self.device),
            self.valid.get_column(LABEL).to_numpy(),
            self.settings.neural.blend_grid,
        )
        network = self.network_scores(model, prep)
        target, k = self.fold.target, self.settings.k
        users = target.frame.get_column(USER_ID)
        value = target.ndcg(blending.blend(users, self.lgbm_score, network, weight), k)
        self.values.append(value)
        self.details.append({"blend": value, "neural": target.ndcg(network, k), "weight": weight})
        return value


class NeuralObjective:
    model = "neural"
    direction = "maximize"
    scorer: type[EpochScorer] = EpochScorer

    def default_space(self) -> Path:
        return SPACES_DIR / "neural.yml"

    def check_space(self, space: SearchSpace) -> None:
        allowed = searchable()
        unknown = sorted(set(space.params) - allowed)
        if unknown:
            raise SpaceError(
                f"not neural ranker parameters: {', '.join(unknown)} "
                f"(searchable: {', '.join(sorted(allowed))})"
            )

    def default_params(self, settings: Settings) -> dict[str, Any]:
        return settings.neural.model_dump()

    def fingerprint(self, settings: Settings, snapshot: Snapshot) -> dict[str, Any]:
        return {**windows_fingerprint(settings, snapshot), "objective": self.model}

    def build(self, settings: Settings, snapshot: Snapshot, out: Path) -> dict[str, Any]:
        events = events_before(snapshot.events(), snapshot.as_of)
        summary = build_windows(events, snapshot.catalog(), snapshot.as_of, settings, out)
        events.write_parquet(out / EVENTS_FILE)
        return summary

    def prepare(self, settings: Settings, snapshot: Snapshot, data_dir: Path) -> dict[str, Any]:
        return replace_cached(
            data_dir,
            self.fingerprint(settings, snapshot),
            lambda out: self.build(settings, snapshot, out),
        )

    def evaluate(
        self, params: dict[str, Any], settings: Settings, data_dir: Path, prune: PruneHook
    ) -> TrialOutcome:
        summary = json.loads((data_dir / FINGERPRINT_FILE).read_text())["summary"]
        trial = with_neural_params(settings, {**params, "refit": False})
        device = resolve_device(trial.neural.device)
        max_epochs, warmup = trial.neural.max_epochs, settings.tune.prune_warmup_epochs
        values, best_epochs, by_epoch, chosen = [], [], [], []
        with _TORCH_LOCK:
            started = time.perf_counter()
            events = pl.read_parquet(data_dir / EVENTS_FILE)
            for fold in range(len(summary["folds"])):
                data = FoldData(data_dir, fold, trial, events)
                scorer = self.scorer(data, trial, device)

                def hook(epoch: int, model: torch.nn.Module, prep: Preprocessor) -> None:
                    scorer(model, prep)  # noqa: B023
                    if epoch > warmup:  # the fold's best so far: early stopping keeps it
                        prune(fold * max_epochs + epoch - 1, max(scorer.values))  # noqa: B023

                fit = fit_neural(
                    data.windows, data.events, summary["features"], trial, device, epoch_hook=hook
                )
                best = fit.meta["best_epoch"]
                values.append(scorer.values[best - 1])
                best_epochs.append(best)
                by_epoch.append([round(v, 6) for v in scorer.values])
                chosen.append(scorer.details[best - 1])
            seconds = time.perf_counter() - started
        attrs = {
            "fold_ndcg": [round(v, 6) for v in values],
            "best_epochs": best_epochs,
            "epoch_ndcg": by_epoch,
            "train_seconds": round(seconds, 2),
        }
        if self.model == "blend":
            attrs["blend_weights"] = [d["weight"] for d in chosen]
            attrs["neural_fold_ndcg"] = [round(d["neural"], 6) for d in chosen]
        return TrialOutcome(statistics.fmean(values), attrs)

    def register_best(
        self,
        settings: Settings,
        snapshot: Snapshot,
        params: dict[str, Any],
        tuning: dict[str, Any],
    ) -> dict[str, Any]:
        """Train as the nightly run would (this kind; the champion's carried LightGBM
        parameters; the study's network parameters), register, run the promotion gate."""
        models_dir = settings.models_dir
        serving = registry.serving_model(models_dir, snapshot.as_of)
        carried = carried_lightgbm(settings, serving)
        tuned = with_neural_params(with_carried(settings, carried), params)
        trained = train_models(
            [self.model], snapshot.events(), snapshot.catalog(), snapshot.as_of, tuned
        )[self.model]
        trained.meta.update({**carried, TUNED_NEURAL_KEY: params, "tuning": tuning})
        if carried:
            assert serving is not None
            trained.meta[TUNED_FROM_KEY] = serving.version
        gate = register_and_gate(
            models_dir, trained, snapshot.as_of, settings.ranker.gate_tolerance
        )
        return gate.summary()


def carried_lightgbm(settings: Settings, serving: registry.ModelRecord | None) -> dict[str, Any]:
    """The tuned LightGBM parameters a nightly retrain takes from the serving champion (none
    when it has none); its network parameters are not taken: a study's replace them."""
    carried = nightly_carried(settings, serving.meta if serving else None)
    carried.pop(TUNED_NEURAL_KEY, None)
    return carried


def blend_lightgbm_settings(settings: Settings, as_of: dt.datetime) -> tuple[Settings, str]:
    """The settings whose ranker a nightly blend retrain at `as_of` would fit, and where its
    parameters come from (a model version, or "settings")."""
    serving = registry.serving_model(settings.models_dir, as_of)
    carried = carried_lightgbm(settings, serving)
    if not carried or serving is None:
        return settings, "settings"
    return with_carried(settings, carried), serving.version


class BlendObjective(NeuralObjective):
    model = "blend"
    scorer = BlendEpochScorer

    def fingerprint(self, settings: Settings, snapshot: Snapshot) -> dict[str, Any]:
        # The LightGBM parameters, not the version they come from: a new champion carrying
        # the same parameters (e.g. this study's own blend) leaves the study resumable.
        nightly, _ = blend_lightgbm_settings(settings, snapshot.as_of)
        ranker = nightly.ranker.model_dump(exclude={"num_threads", "kind"})
        return {**super().fingerprint(settings, snapshot), "lightgbm": ranker}

    def build(self, settings: Settings, snapshot: Snapshot, out: Path) -> dict[str, Any]:
        """The windows, then each fold's LightGBM, early-stopped on its validation window."""
        summary = super().build(settings, snapshot, out)
        nightly, source = blend_lightgbm_settings(settings, snapshot.as_of)
        cfg, k, n_windows = nightly.ranker, settings.k, settings.ranker.n_windows
        features, lgbm_ndcg = summary["features"], []
        for fold in range(len(summary["folds"])):
            windows = _windows(out, fold, n_windows)
            fit = lgbm.fit(
                keyed(windows[1:]), features, cfg, settings.seed, valid=keyed(windows[:1])
            )
            folder = out / "folds" / str(fold)
            target = FoldTarget.load(folder)
            valid_scores = lgbm.predict(fit.booster, windows[0], features)
            scores = lgbm.predict(fit.booster, target.frame, features)
            pl.DataFrame({SCORE: valid_scores}).write_parquet(folder / LGBM_VALID_FILE)
            pl.DataFrame({SCORE: scores}).write_parquet(folder / LGBM_SCORE_FILE)
            lgbm_ndcg.append(round(target.ndcg(scores, k), 6))
        return {
            **summary,
            "lightgbm_params": lgbm.booster_params(cfg, settings.seed),
            "lightgbm_params_from": source,
            "lightgbm_fold_ndcg": lgbm_ndcg,
        }
