"""The LightGBM objective on a tiny synthetic shop: a fold scores exactly what the nightly
trainer's early-stopped model at that fold's as_of scores, a tuned model is registered and
gated, and the nightly retrain takes the champion's tuned parameters."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.features.snapshot import take_snapshot
from tasks.ingest.load import ingest_catalog, ingest_landing
from tasks.protocol.metrics import ranking_metrics
from tasks.protocol.split import evaluated_users, truth_window
from tasks.rank import lgbm, registry
from tasks.rank.params import TUNED_NEURAL_KEY, TUNED_PARAMS_KEY, with_ranker_params
from tasks.rank.recommend import BoosterScorer, recommend_with
from tasks.rank.task import choose_model
from tasks.rank.train import keyed, train_ranker
from tasks.settings import load_settings
from tasks.synth.shop import SynthShopConfig, generate_shop, write_landing
from tasks.tune.lgbm_objective import LightGBMObjective

SHOP = SynthShopConfig(n_customers=40, n_items=30, n_categories=4, days=45, seed=3)
AS_OF = SHOP.start + dt.timedelta(days=SHOP.days - 5)
K = 5


@pytest.fixture
def tiny_store(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {
        "NIGHTREC_HOME": str(home),
        "NIGHTREC_K": str(K),
        "NIGHTREC_HORIZON_DAYS": "7",
        "NIGHTREC_RANKER__N_WINDOWS": "3",
        "NIGHTREC_RANKER__WINDOW_STEP_DAYS": "7",
        "NIGHTREC_RANKER__MIN_DATA_IN_LEAF": "5",
        "NIGHTREC_RANKER__NUM_THREADS": "1",
        "NIGHTREC_RANKER__KIND": "lightgbm",  # the asserts read a LightGBM model
        "NIGHTREC_TUNE__THREADS_PER_TRIAL": "1",
        "NIGHTREC_TUNE__VALIDATION_FOLDS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    report = write_landing(generate_shop(SHOP), home / "landing")
    ingest_catalog(home / "nightrec.duckdb", report.catalog_path)
    ingest_landing(home / "nightrec.duckdb", "canonical", home / "landing", max_bad_share=0.5)
    return home


def _as_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


def test_fold_zero_replays_the_nightly_trainer_at_its_as_of(tiny_store: Path) -> None:
    settings = load_settings()
    settings = settings.model_copy(
        update={"tune": settings.tune.model_copy(update={"validation_folds": 2})}
    )
    snapshot = take_snapshot(settings, _as_of(AS_OF), tiny_store / "work")
    objective = LightGBMObjective()
    data_dir = tiny_store / "data"
    summary = objective.prepare(settings, snapshot, data_dir)
    assert summary["reused"] is False and len(summary["folds"]) == 2
    horizon = dt.timedelta(days=7)
    # Fold f replays the nightly trainer at A_f: scored on [A_f, A_f + H) before the study's
    # as-of, stopped early on the window whose labels end at A_f, fit on the windows before.
    for fold, step in zip(summary["folds"], (0, 7), strict=True):
        as_of = dt.datetime.fromisoformat(fold["as_of"])
        assert as_of == _as_of(AS_OF) - horizon - dt.timedelta(days=step)
        assert dt.datetime.fromisoformat(fold["stop_on"]) + horizon == as_of
        assert len(fold["train"]) == 2 and all(d < fold["stop_on"] for d in fold["train"])
    assert summary["windows"] == sorted(summary["windows"], reverse=True)
    assert len(summary["windows"]) == 3 + 2 - 1
    assert objective.prepare(settings, snapshot, data_dir)["reused"] is True

    params = {"learning_rate": 0.1, "num_leaves": 7}
    reported: list[tuple[int, float]] = []
    outcome = objective.evaluate(params, settings, data_dir, lambda s, v: reported.append((s, v)))
    fold0, fold1 = outcome.attrs["fold_ndcg"]
    assert outcome.value == pytest.approx((fold0 + fold1) / 2)
    assert reported == [(0, pytest.approx(fold0)), (1, pytest.approx(outcome.value))]

    # The nightly trainer at fold 0's as_of with the same parameters: the protocol NDCG@K of
    # its early-stopped model at that as_of is fold 0's value, and its rounds are fold 0's.
    tuned = with_ranker_params(settings, params)
    fold0_as_of = dt.datetime.fromisoformat(summary["folds"][0]["as_of"])
    events, catalog = snapshot.events(), snapshot.catalog()
    trained = train_ranker(events, catalog, fold0_as_of, tuned)
    assert trained.early_booster is not None
    users = evaluated_users(events, fold0_as_of, tuned.horizon_days)
    scorer = BoosterScorer(trained.early_booster, trained.meta["features"])
    recs = recommend_with(scorer, events, catalog, users, fold0_as_of, tuned)
    truth = truth_window(events, fold0_as_of, tuned.horizon_days)
    ndcg = ranking_metrics(recs, truth, users, K)[f"ndcg@{K}"]
    assert ndcg == pytest.approx(fold0, abs=1e-6)
    assert trained.meta["best_iteration"] == outcome.attrs["best_iterations"][0]
    assert trained.meta["validation_window"] == summary["folds"][0]["stop_on"]

    # The served model is refit on every window, the stopping window and the oldest too, for
    # the early-stopped rounds: exactly a fit on the fold's cached windows.
    first = summary["folds"][0]
    assert trained.meta["train_windows"] == [first["stop_on"], *first["train"]]
    frames = [pl.read_parquet(data_dir / "windows" / f"{i}.parquet") for i in first["window_index"]]
    assert trained.meta["train_rows"] == sum(f.height for f in frames)
    features = trained.meta["features"]
    refit = lgbm.fit(
        keyed(frames),
        features,
        tuned.ranker,
        tuned.seed,
        num_boost_round=trained.meta["best_iteration"],
    )
    np.testing.assert_allclose(
        lgbm.predict(trained.booster, frames[0], features),
        lgbm.predict(refit.booster, frames[0], features),
    )
    without_oldest = lgbm.fit(
        keyed(frames[:-1]),
        features,
        tuned.ranker,
        tuned.seed,
        num_boost_round=trained.meta["best_iteration"],
    )
    assert not np.allclose(
        lgbm.predict(trained.booster, frames[0], features),
        lgbm.predict(without_oldest.booster, frames[0], features),
    )


@pytest.mark.flow
def test_tuned_model_is_registered_gated_and_its_params_reach_the_nightly_retrain(
    prefect_harness: None, tiny_store: Path, tmp_path: Path
) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.tune import TuneParams, tune_flow

    space = tmp_path / "space.yml"
    space.write_text(
        "params:\n"
        "  learning_rate: {type: float, low: 0.01, high: 0.3, grid: [0.05, 0.2]}\n"
        "  num_leaves: {type: int, low: 3, high: 31, grid: [7]}\n"
    )
    params = TuneParams(
        study="tiny", search="grid", trials=10, as_of=AS_OF, space=str(space), home=str(tiny_store)
    )
    info = tune_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(params)
    assert info["trials"] == {"COMPLETE": 2} and info["stopped_because"] == "grid covered"
    best = info["best"]
    assert best["params"]["num_leaves"] == 7 and best["params"]["learning_rate"] in (0.05, 0.2)
    registered = info["registered"]
    assert registered["promoted"] is True and registered["reason"].startswith("first model")

    settings = load_settings()
    champion = registry.champion(settings.models_dir)
    assert champion is not None and champion.version == registered["version"]
    assert champion.meta[TUNED_PARAMS_KEY] == best["params"]
    assert champion.meta["tuning"]["study"] == "tiny"
    assert champion.meta["params"]["learning_rate"] == best["params"]["learning_rate"]
    assert champion.meta["params"]["num_leaves"] == 7
    report = tiny_store / "tuning" / "tiny" / "report"
    assert json.loads((report / "summary.json").read_text())["best"] == best
    assert (report / "best_params.png").stat().st_size > 0

    # A nightly retrain a week later trains with the champion's tuned parameters.
    later = take_snapshot(settings, _as_of(AS_OF + dt.timedelta(days=4)), tiny_store / "w2")
    choice = choose_model(settings, later, retrain=True)
    retrained = max(registry.list_models(settings.models_dir), key=lambda r: r.as_of)
    assert choice.retrained and retrained.as_of == later.as_of
    assert retrained.meta[TUNED_PARAMS_KEY] == best["params"]
    assert retrained.meta["tuned_params_from"] == champion.version
    assert retrained.meta["params"]["num_leaves"] == 7

    # Without a tuned champion the retrain uses the defaults.
    (settings.models_dir / registry.CHAMPION_FILE).unlink()
    for record in registry.list_models(settings.models_dir):
        if record.version != champion.version:
            shutil.rmtree(record.path)
    plain = choose_model(settings, later, retrain=True)
    assert plain.retrained
    fresh = [r for r in registry.list_models(settings.models_dir) if r.as_of == later.as_of]
    assert len(fresh) == 1 and TUNED_PARAMS_KEY not in fresh[0].meta
    assert fresh[0].meta["params"]["num_leaves"] == settings.ranker.num_leaves == 31


def test_a_tuned_lightgbm_model_keeps_the_champions_tuned_network_parameters(
    tiny_store: Path,
) -> None:
    settings = load_settings()
    snapshot = take_snapshot(settings, _as_of(AS_OF), tiny_store / "work")
    events, catalog = snapshot.events(), snapshot.catalog()
    first = train_ranker(events, catalog, snapshot.as_of, settings)
    network = {"hidden": 16, "learning_rate": 0.004}
    champion = registry.register(
        settings.models_dir,
        "lgbm",
        first.booster.model_to_string(),
        {**first.meta, TUNED_NEURAL_KEY: network},
    )
    registry.promote(settings.models_dir, champion.version)

    params = {"learning_rate": 0.1, "num_leaves": 7}
    info = LightGBMObjective().register_best(settings, snapshot, params, {"study": "s"})
    record = next(
        r for r in registry.list_models(settings.models_dir) if r.version == info["version"]
    )
    assert record.meta[TUNED_PARAMS_KEY] == params
    assert record.meta[TUNED_NEURAL_KEY] == network
