"""Model kinds on a tiny synthetic shop: neural and blend trained on the LightGBM windows,
registered with their files, loaded back to the same scores, judged by the same gate."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.rank import registry
from tasks.rank.dataset import candidate_frame
from tasks.rank.gate import promotion_gate, validation_lift
from tasks.rank.kinds import (
    SELECTION_KEY,
    load_scorer,
    pick_best,
    register_trained,
    resolve_kind,
    train_auto,
    train_models,
    validation_ndcg,
)
from tasks.rank.kinds.blend import BOOSTER_FILE
from tasks.rank.kinds.neural import NETWORK_FILE
from tasks.settings import Settings, load_settings
from tasks.synth.shop import SynthShopConfig, generate_shop
from tasks.timeutil import known_users

SHOP = SynthShopConfig(n_customers=80, n_items=40, n_categories=4, days=60, seed=5)
CUTOFF = dt.datetime.combine(SHOP.start + dt.timedelta(days=SHOP.days), dt.time())


def _settings(home: Path) -> Settings:
    s = load_settings(home=home, horizon_days=7, k=5)
    return s.model_copy(
        update={
            "ranker": s.ranker.model_copy(
                update={
                    "n_windows": 3,
                    "window_step_days": 7,
                    "min_data_in_leaf": 5,
                    "num_threads": 1,
                }
            ),
            "neural": s.neural.model_copy(
                update={"max_epochs": 3, "num_threads": 1, "hidden": 32, "item_dim": 8}
            ),
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("home")
    shop = generate_shop(SHOP)
    settings = _settings(home)
    models = train_models(["neural", "blend"], shop.events, shop.catalog, CUTOFF, settings)
    return shop, settings, models


def test_neural_and_blend_are_validated_under_the_protocol_beside_the_baselines(trained) -> None:
    _, settings, models = trained
    assert set(models) == {"neural", "blend"}
    for kind, model in models.items():
        validation = model.meta["validation"]
        assert validation["model_key"] == kind
        assert set(validation["metrics"]) == {kind, "popularity", "repurchase"}
        ndcg, baseline, _ = validation_lift(model.meta)
        assert ndcg == validation["metrics"][kind]["ndcg@5"]
        assert baseline == max(
            validation["metrics"][b]["ndcg@5"] for b in ("popularity", "repurchase")
        )
    blend = models["blend"].meta
    weights = {float(w): v for w, v in blend["blend_valid_ndcg10_by_weight"].items()}
    assert len(weights) == settings.neural.blend_grid + 1
    # The chosen weight is the best on the validation window (1.0 = LightGBM alone).
    assert weights[blend["blend_weight_lightgbm"]] == max(weights.values())
    assert blend["neural"]["best_epoch"] >= 1 and blend["validation_window"] < blend["as_of"]


def test_registered_models_load_back_to_the_same_scores(trained, tmp_path: Path) -> None:
    shop, settings, models = trained
    users = known_users(shop.events, CUTOFF)
    frame = candidate_frame(shop.events, shop.catalog, users, CUTOFF, settings.candidates)
    for kind, model in models.items():
        record = register_trained(tmp_path, model)
        assert record.version.startswith(f"{kind}-{CUTOFF:%Y%m%d}-")
        assert (record.path / NETWORK_FILE).is_file()
        assert (record.path / BOOSTER_FILE).is_file() == (kind == "blend")
        assert register_trained(tmp_path, model).version == record.version  # idempotent
        loaded = load_scorer(registry.load(tmp_path, record.version), settings)
        expected = model.scorer.score(frame, shop.events, CUTOFF)
        np.testing.assert_array_equal(loaded.score(frame, shop.events, CUTOFF), expected)
    # Quantized scoring is an option of the loaded model: close, not equal.
    quant = settings.model_copy(
        update={"neural": settings.neural.model_copy(update={"quantize": True})}
    )
    record = register_trained(tmp_path, models["neural"])
    exact = models["neural"].scorer.score(frame, shop.events, CUTOFF)
    approx = load_scorer(record, quant).score(frame, shop.events, CUTOFF)
    assert not np.array_equal(exact, approx)
    assert np.corrcoef(exact, approx)[0, 1] > 0.95


def test_the_gate_judges_a_blend_by_its_own_row_against_a_lightgbm_champion() -> None:
    def meta(key: str, model: float, repurchase: float) -> dict:
        metrics = {key: {"ndcg@10": model}, "repurchase": {"ndcg@10": repurchase}}
        validation = {"k": 10, "metrics": metrics}
        if key != "lightgbm":
            validation["model_key"] = key
        return {"as_of": "2026-01-01", "validation": validation}

    champion = meta("lightgbm", 0.36, 0.30)  # lift 1.20
    assert promotion_gate(meta("blend", 0.40, 0.32), champion).promote  # lift 1.25
    assert not promotion_gate(meta("blend", 0.33, 0.32), champion).promote  # lift 1.03
    assert not promotion_gate(meta("neural", 0.30, 0.32), None).promote  # below the baseline


def _auto(settings: Settings, **neural: object) -> Settings:
    return settings.model_copy(
        update={
            "ranker": settings.ranker.model_copy(update={"kind": "auto"}),
            "neural": settings.neural.model_copy(update=neural),
        }
    )


def test_kind_auto_is_resolved_by_training_and_a_setting_pins_a_kind(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert resolve_kind(_auto(settings)) == "auto"  # the same on CPU and under CUDA
    blend = settings.model_copy(
        update={"ranker": settings.ranker.model_copy(update={"kind": "blend"})}
    )
    assert resolve_kind(blend) == "blend"
    with pytest.raises(ValueError, match="unknown model kind"):
        train_models(["forest"], pl.DataFrame(), pl.DataFrame(), CUTOFF, settings)


def test_pick_best_takes_the_best_validation_ndcg_and_the_simpler_kind_on_ties() -> None:
    assert pick_best({"lightgbm": 0.40, "neural": 0.39, "blend": 0.41}, 0.0) == (
        "blend",
        "blend has the best validation NDCG (0.4100 vs lightgbm 0.4000)",
    )
    kind, why = pick_best({"lightgbm": 0.40, "neural": 0.39, "blend": 0.41}, 0.02)
    assert kind == "lightgbm"
    assert why == "lightgbm kept: blend 0.4100 is not more than 0.02 above lightgbm 0.4000"
    kind, why = pick_best({"lightgbm": 0.40, "blend": 0.40}, 0.0)
    assert kind == "lightgbm" and "tie" in why
    assert pick_best({"lightgbm": 0.30, "neural": 0.42, "blend": 0.42}, 0.0)[0] == "neural"
    assert pick_best({"lightgbm": 0.30}, 0.0) == ("lightgbm", "lightgbm: the only kind trained")


def test_auto_trains_every_kind_that_fits_and_keeps_the_best_on_validation(
    trained, tmp_path: Path
) -> None:
    shop, settings, models = trained
    fits = _auto(settings, auto_budget_s=3600, auto_memory_mib=10**6)
    model = train_auto(shop.events, shop.catalog, CUTOFF, fits)
    selection = model.meta[SELECTION_KEY]
    assert selection["mode"] == "auto" and selection["trained"] == ["lightgbm", "neural", "blend"]
    ndcg = selection["validation_ndcg"]
    # The same network and blend as trained alone (same seed, same windows, CPU exact).
    for kind in ("neural", "blend"):
        assert ndcg[kind] == round(models[kind].meta["validation"]["metrics"][kind]["ndcg@5"], 6)
    winner = selection["winner"]
    assert (winner, selection["why"]) == pick_best(ndcg, 0.0)
    assert model.kind == winner and model.meta["model_kind"] == winner
    assert validation_ndcg(model.meta) == pytest.approx(ndcg[winner], abs=1e-6)
    network = selection["network"]
    assert network["status"] == "trained" and network["budget_s"] == 3600
    assert 0 < network["estimate"]["seconds"] <= 3600
    assert network["estimate"]["epochs"] == settings.neural.max_epochs
    assert network["estimate"]["tensor_mib"] > 0 and network["memory_mib"]["in_use"] > 0
    assert network["why"].startswith("network trained: estimated ")
    assert 0 < network["fit_seconds"] <= network["seconds"]


def test_auto_skips_the_network_over_its_budget_and_says_so(trained) -> None:
    shop, settings, _ = trained
    model = train_auto(shop.events, shop.catalog, CUTOFF, _auto(settings, auto_budget_s=1e-6))
    selection = model.meta[SELECTION_KEY]
    assert model.kind == "lightgbm" and selection["winner"] == "lightgbm"
    assert selection["trained"] == ["lightgbm"] and list(selection["validation_ndcg"]) == [
        "lightgbm"
    ]
    network = selection["network"]
    assert network["status"] == "skipped"
    assert network["estimate"]["seconds"] > 0
    assert re.fullmatch(
        r"network skipped: estimated \d+ s on (cpu|cuda) over the budget 0 s "
        r"\(neural\.auto_budget_s\)",
        network["why"],
    ), network["why"]


def test_the_network_estimate_counts_every_list_without_building_their_tensors(trained) -> None:
    """The estimate times steps on the first lists only and extrapolates to the windows' list
    counts: those counts are the full tensors' own, and the full tensors are never built."""
    from tasks.rank.kinds.base import TrainingContext
    from tasks.rank.kinds.neural import _lists, network_data, network_estimate

    shop, settings, _ = trained
    ctx = TrainingContext(shop.events, shop.catalog, CUTOFF, settings)
    estimate = network_estimate(ctx)
    assert "network_data" not in ctx.shared
    data = network_data(ctx)
    max_len = settings.neural.train_list_len
    assert _lists(ctx.frames[1:], max_len) == data.train.n_lists
    assert _lists(ctx.frames[:1], 0) == data.valid.n_lists
    assert data.refit is not None and _lists(ctx.frames[:-1], max_len) == data.refit.n_lists
    epochs = settings.neural.max_epochs
    assert estimate.epochs == epochs
    assert estimate.seconds == pytest.approx(
        epochs * (data.train.n_lists * estimate.train_list_s)
        + epochs * (data.valid.n_lists * estimate.eval_list_s)
        + epochs * data.refit.n_lists * estimate.train_list_s
    )


def test_auto_skips_the_network_over_its_memory_budget_and_says_so(trained) -> None:
    """Within the time budget but not the memory one: LightGBM alone, and the run says why."""
    shop, settings, _ = trained
    model = train_auto(
        shop.events, shop.catalog, CUTOFF, _auto(settings, auto_budget_s=3600, auto_memory_mib=1)
    )
    selection = model.meta[SELECTION_KEY]
    assert model.kind == "lightgbm" and selection["trained"] == ["lightgbm"]
    network = selection["network"]
    assert network["status"] == "skipped"
    assert re.fullmatch(
        r"network skipped: its tensors need about \d+ MiB beside the \d+ MiB in use, over the "
        r"budget 1 MiB \(neural\.auto_memory_mib\)",
        network["why"],
    ), network["why"]


def test_the_backtest_scores_autos_pick_as_trained_by_auto(trained) -> None:
    """`run_backtest(auto=True)` trains through `ranker.kind=auto`'s own path: its row "auto"
    is the winner's lists (its metrics equal the winner's row), the selection is auto's, and
    every model row has its interval against the best baseline; over the network's budget,
    auto serves LightGBM and the backtest has no network rows."""
    from tasks.evaluate.backtest import run_backtest
    from tasks.evaluate.report import render_markdown

    shop, settings, _ = trained
    as_of = CUTOFF - dt.timedelta(days=settings.horizon_days)
    fits = _auto(settings, auto_budget_s=3600, auto_memory_mib=10**6)
    result = run_backtest(shop.events, shop.catalog, as_of, fits, n_resamples=50, auto=True)
    selection = result.auto_selection
    assert selection["trained"] == ["lightgbm", "neural", "blend"]
    winner = selection["winner"]
    assert (winner, selection["why"]) == pick_best(selection["validation_ndcg"], 0.0)
    # the same lists; diversity sums in no fixed order, so equal to the last bits
    assert result.metrics["auto"] == pytest.approx(result.metrics[winner], rel=1e-12)
    assert set(result.baseline_differences) == {"lightgbm", "neural", "blend", "auto"}
    assert result.baseline_differences["auto"] == result.baseline_differences[winner]
    assert result.baseline_differences["lightgbm"] == result.ndcg_difference
    for d in result.baseline_differences.values():
        assert d["low"] <= d["mean_diff"] <= d["high"]
    assert result.as_dict()["auto_selection"]["winner"] == winner
    page = render_markdown(result, "test")
    assert f"ranker.kind=auto (row `auto`) serves **{winner}**: {selection['why']}" in page
    neural = result.baseline_differences["neural"]
    assert f"NDCG@10 difference, neural minus the best baseline: {neural['mean_diff']:+.4f}" in page

    skipped = _auto(settings, auto_budget_s=1e-6)
    result = run_backtest(shop.events, shop.catalog, as_of, skipped, n_resamples=50, auto=True)
    assert result.auto_selection["winner"] == "lightgbm"
    assert result.auto_selection["network"]["status"] == "skipped"
    assert set(result.baseline_differences) == {"lightgbm", "auto"}
    assert result.metrics["auto"] == pytest.approx(result.metrics["lightgbm"], rel=1e-12)
    assert "neural" not in result.metrics and "blend" not in result.metrics
