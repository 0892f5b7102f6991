"""Tuning the neural ranker and the blend on the tiny synthetic shop: each fold scores what
the nightly trainer at the fold's as_of scores, epochs reach the pruner, a grid covers its
grid, the best trial is registered and gated, and nightly retrains take the champion's tuned
network (and LightGBM) parameters."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tasks.features.snapshot import take_snapshot
from tasks.protocol.metrics import ranking_metrics
from tasks.protocol.split import evaluated_users, truth_window
from tasks.rank import registry
from tasks.rank.kinds import recommend_with, train_models
from tasks.rank.params import TUNED_FROM_KEY, TUNED_NEURAL_KEY, TUNED_PARAMS_KEY
from tasks.rank.task import choose_model
from tasks.settings import load_settings
from tasks.synth.tiny import TINY_K, TINY_PROTOCOL_ENV, TINY_SHOP, stage_tiny_shop
from tasks.tune.neural_objective import BlendObjective, NeuralObjective, searchable
from tasks.tune.objective import SPACES_DIR
from tasks.tune.space import SpaceError, load_space

ROOT = Path(__file__).resolve().parents[1]
AS_OF = TINY_SHOP.start + dt.timedelta(days=TINY_SHOP.days - 5)
LATER = AS_OF + dt.timedelta(days=4)
EPOCHS = 3
# A network small enough to train in a fraction of a second; every epoch runs (patience).
TINY_NETWORK_ENV = {
    "NIGHTREC_NEURAL__DEVICE": "cpu",
    "NIGHTREC_NEURAL__NUM_THREADS": "1",
    "NIGHTREC_NEURAL__MAX_EPOCHS": str(EPOCHS),
    "NIGHTREC_NEURAL__PATIENCE": str(EPOCHS),
    "NIGHTREC_NEURAL__HIDDEN": "16",
    "NIGHTREC_NEURAL__ITEM_DIM": "8",
    "NIGHTREC_NEURAL__USER_BUCKETS": "64",
    "NIGHTREC_NEURAL__SEQ_LEN": "5",
    "NIGHTREC_NEURAL__BATCH_LISTS": "8",
    "NIGHTREC_TUNE__VALIDATION_FOLDS": "2",
    "NIGHTREC_TUNE__THREADS_PER_TRIAL": "1",
}


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny shop ingested once per module; each test gets a copy of the store."""
    home = tmp_path_factory.mktemp("tiny-shop")
    stage_tiny_shop(home, home / "landing", TINY_SHOP.start + dt.timedelta(days=TINY_SHOP.days))
    return home / "nightrec.duckdb"


@pytest.fixture
def tiny_store(home: Path, tiny_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {**TINY_PROTOCOL_ENV, **TINY_NETWORK_ENV}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NIGHTREC_HOME", str(home))
    shutil.copy(tiny_db, home / "nightrec.duckdb")
    return home


def _as_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


def _space(path: Path, lines: str) -> Path:
    path.write_text("params:\n" + lines)
    return path


def _tune(*args: str) -> str:
    """`nightrec tune ...` in this process (the session's Prefect harness); its output."""
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["tune", "--as-of", f"{AS_OF}", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _study(home: Path, name: str) -> optuna.Study:
    from tasks.tune.study import storage

    return optuna.load_study(study_name=name, storage=storage(home / "tuning" / name))


# --- the objectives, without Prefect -------------------------------------------------------


def test_each_fold_replays_the_nightly_trainer_epoch_by_epoch(
    tiny_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No refit: the nightly network is then the early-stopped one the fold scores.
    monkeypatch.setenv("NIGHTREC_NEURAL__REFIT", "false")
    monkeypatch.setenv("NIGHTREC_TUNE__PRUNE_WARMUP_EPOCHS", "0")
    settings = load_settings()
    snapshot = take_snapshot(settings, _as_of(AS_OF), tiny_store / "work")
    for objective in (NeuralObjective(), BlendObjective()):
        data_dir = tiny_store / f"data-{objective.model}"
        summary = objective.prepare(settings, snapshot, data_dir)
        assert summary["reused"] is False and len(summary["folds"]) == 2
        assert objective.prepare(settings, snapshot, data_dir)["reused"] is True
        reported: list[tuple[int, float]] = []

        def hook(step: int, value: float, out: list = reported) -> None:
            out.append((step, value))

        outcome = objective.evaluate({}, settings, data_dir, hook)

        # Without warm-up every epoch of every fold reached the hook, at steps
        # fold * max_epochs + epoch - 1, with the fold's best value so far.
        epochs = outcome.attrs["epoch_ndcg"]
        assert [len(e) for e in epochs] == [EPOCHS, EPOCHS]
        assert [s for s, _ in reported] == list(range(2 * EPOCHS))
        best_so_far = [max(e[: i + 1]) for e in epochs for i in range(EPOCHS)]
        assert [round(v, 6) for _, v in reported] == pytest.approx(best_so_far, abs=1e-6)
        # A fold's value is its best epoch's (by early stopping); the trial's is their mean.
        fold_values = [epochs[f][outcome.attrs["best_epochs"][f] - 1] for f in (0, 1)]
        assert outcome.attrs["fold_ndcg"] == fold_values
        assert outcome.value == pytest.approx(sum(fold_values) / 2, abs=1e-6)

        # Fold 0 is the nightly trainer at its as-of A_0: same stopping window, same best
        # epoch and blend weight; the network's top-K at A_0 scores fold 0's value.
        fold0_as_of = dt.datetime.fromisoformat(summary["folds"][0]["as_of"])
        events, catalog = snapshot.events(), snapshot.catalog()
        model = train_models([objective.model], events, catalog, fold0_as_of, settings)[
            objective.model
        ]
        assert model.meta["validation_window"] == summary["folds"][0]["stop_on"]
        assert outcome.attrs["best_epochs"][0] == model.meta["neural"]["best_epoch"]
        if objective.model == "neural":
            users = evaluated_users(events, fold0_as_of, settings.horizon_days)
            recs = recommend_with(model.scorer, events, catalog, users, fold0_as_of, settings)
            truth = truth_window(events, fold0_as_of, settings.horizon_days)
            nightly = ranking_metrics(recs, truth, users, TINY_K)[f"ndcg@{TINY_K}"]
            assert outcome.attrs["fold_ndcg"][0] == pytest.approx(nightly, abs=1e-6)
        else:
            assert outcome.attrs["blend_weights"][0] == model.meta["blend_weight_lightgbm"]
            assert summary["lightgbm_params_from"] == "settings"
            assert len(summary["lightgbm_fold_ndcg"]) == 2


def test_the_shipped_space_fits_both_and_bad_keys_are_refused(tmp_path: Path) -> None:
    space = load_space(SPACES_DIR / "neural.yml")
    for objective in (NeuralObjective(), BlendObjective()):
        assert objective.default_space() == SPACES_DIR / "neural.yml"
        objective.check_space(space)
    assert space.grid_size() == 8
    defaults = load_settings().neural
    for name, distribution in space.distributions().items():  # trial 0 can be the defaults
        value = getattr(defaults, name)
        assert distribution._contains(distribution.to_internal_repr(value)), name
    assert {"device", "max_epochs", "patience", "num_threads"}.isdisjoint(searchable())
    bad = _space(tmp_path / "bad.yml", "  max_epochs: {type: int, low: 1, high: 9}\n")
    with pytest.raises(SpaceError, match=r"not neural ranker parameters: max_epochs \(search"):
        BlendObjective().check_space(load_space(bad))


def test_a_bad_space_key_is_one_line_before_prefect_starts(home: Path, tmp_path: Path) -> None:
    bad = _space(
        tmp_path / "bad.yml",
        "  num_leaves: {type: int, low: 7, high: 63}\n"
        "  learning_rate: {type: float, low: 0.001, high: 0.01}\n",
    )
    result = subprocess.run(
        [
            *(sys.executable, "-m", "flows.cli", "tune", "--study", "s", "--model", "neural"),
            *("--space", str(bad), "--home", str(home)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: not neural ranker parameters: num_leaves (searchable: ")
    assert lines[1:] == ["hint: fix the search space YAML (see tasks/tune/spaces/)"]
    assert not (home / "tuning").exists()


# --- studies through the CLI and the flow --------------------------------------------------


@pytest.mark.flow
def test_a_neural_grid_covers_its_grid_registers_and_the_nightly_retrain_uses_it(
    prefect_harness: None, tiny_store: Path, tmp_path: Path
) -> None:
    space = _space(
        tmp_path / "grid.yml",
        "  learning_rate: {type: float, low: 0.0001, high: 0.1, log: true, grid: [0.002, 0.05]}\n"
        "  hidden: {type: int, low: 8, high: 64, grid: [8, 16]}\n",
    )
    output = _tune(
        *("--study", "nn-grid2", "--model", "neural", "--search", "grid", "--space", str(space))
    )
    study = _study(tiny_store, "nn-grid2")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    points = sorted((t.params["learning_rate"], t.params["hidden"]) for t in complete)
    assert points == [(0.002, 8), (0.002, 16), (0.05, 8), (0.05, 16)]
    assert len(study.trials) == 4
    for t in complete:  # after the default 2 warm-up epochs: epoch 3 of folds 0 and 1
        assert sorted(t.intermediate_values) == [EPOCHS - 1, 2 * EPOCHS - 1]
        best = [max(t.user_attrs["epoch_ndcg"][f]) for f in (0, 1)]
        reported = [t.intermediate_values[s] for s in (EPOCHS - 1, 2 * EPOCHS - 1)]
        assert reported == pytest.approx(best, abs=1e-6)
        assert t.value == pytest.approx(sum(t.user_attrs["fold_ndcg"]) / 2, abs=1e-6)
    assert "grid covered" in output

    settings = load_settings()
    champion = registry.champion(settings.models_dir)
    assert champion is not None and champion.version.startswith("neural-")
    assert f"Registered {champion.version}: promoted (first model" in output.replace("\n", " ")
    assert champion.meta["model_kind"] == "neural"
    assert champion.meta[TUNED_NEURAL_KEY] == study.best_params
    assert champion.meta["tuning"]["study"] == "nn-grid2"
    tuned_network = champion.meta["neural"]["settings"]
    assert {k: tuned_network[k] for k in study.best_params} == study.best_params

    # A nightly neural retrain four days later trains with the champion's network parameters.
    later = take_snapshot(settings, _as_of(LATER), tiny_store / "w2")
    neural = settings.model_copy(
        update={"ranker": settings.ranker.model_copy(update={"kind": "neural"})}
    )
    assert choose_model(neural, later, retrain=True).retrained
    retrained = max(registry.list_models(settings.models_dir), key=lambda r: r.as_of)
    assert retrained.as_of == later.as_of and retrained.meta["model_kind"] == "neural"
    assert retrained.meta[TUNED_NEURAL_KEY] == study.best_params
    assert retrained.meta[TUNED_FROM_KEY] == champion.version
    assert TUNED_PARAMS_KEY not in retrained.meta  # the champion carried no LightGBM parameters
    network = retrained.meta["neural"]["settings"]
    assert {k: network[k] for k in study.best_params} == study.best_params


@pytest.mark.flow
def test_a_bad_learning_rate_is_pruned_between_epochs(
    prefect_harness: None, tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trial 0 is the defaults; trial 1 (queued) a learning rate of 5. After one warm-up
    epoch of a fold, once its best so far lags trial 0's at the same step, the median pruner
    stops it before its last epoch."""
    from tasks.tune.study import StudySpec, enqueue_defaults, make_pruner, open_study, study_lock

    monkeypatch.setenv("NIGHTREC_TUNE__PRUNE_STARTUP_TRIALS", "1")
    monkeypatch.setenv("NIGHTREC_TUNE__PRUNE_WARMUP_EPOCHS", "1")
    space_file = _space(
        tmp_path / "lr.yml", "  learning_rate: {type: float, low: 0.001, high: 10, log: true}\n"
    )
    space = load_space(space_file)
    spec = StudySpec("nn-prune", "neural", "bayes", f"{AS_OF}", space.fingerprint(), 42)
    folder = tiny_store / "tuning" / "nn-prune"
    with study_lock(folder):
        study = open_study(folder, spec, space, make_pruner("median", 1, "bayes"), "maximize")
        assert enqueue_defaults(study, load_settings().neural.model_dump(), space)
        study.enqueue_trial({"learning_rate": 5.0})

    output = _tune(
        *("--study", "nn-prune", "--model", "neural", "--space", str(space_file)),
        *("--trials", "2", "--parallel", "1", "--no-register"),
    )
    first, second = _study(tiny_store, "nn-prune").trials
    assert first.params == {"learning_rate": 0.002} and first.state == TrialState.COMPLETE
    # Steps of epochs 2..3 of folds 0 and 1 (epoch 1 of each fold is the warm-up).
    assert sorted(first.intermediate_values) == [1, 2, EPOCHS + 1, EPOCHS + 2]
    assert second.params == {"learning_rate": 5.0} and second.state == TrialState.PRUNED
    # Stopped between epochs, at a step where its best so far lagged trial 0's.
    last = max(second.intermediate_values)
    assert last < 2 * EPOCHS - 1 and set(second.intermediate_values) <= set(
        first.intermediate_values
    )
    assert second.intermediate_values[last] < first.intermediate_values[last]
    assert "1 complete, 1 pruned" in output


@pytest.mark.flow
def test_a_blend_study_blends_the_champions_lightgbm_and_retrains_carry_both(
    prefect_harness: None, tiny_store: Path, tmp_path: Path
) -> None:
    from tasks.tune.lgbm_objective import LightGBMObjective

    settings = load_settings()
    snapshot = take_snapshot(settings, _as_of(AS_OF), tiny_store / "w0")
    lgbm_params = {"num_leaves": 7, "learning_rate": 0.1}
    lgbm = LightGBMObjective().register_best(settings, snapshot, lgbm_params, {"study": "x"})
    assert lgbm["promoted"] is True

    space = _space(
        tmp_path / "blend.yml",
        "  learning_rate: {type: float, low: 0.001, high: 0.05, log: true}\n"
        "  dropout: {type: float, low: 0.0, high: 0.5}\n",
    )
    output = _tune(
        *("--study", "blend", "--model", "blend", "--space", str(space), "--trials", "2")
    )
    summary = json.loads((tiny_store / "tuning" / "blend" / "report" / "summary.json").read_text())
    prepared = summary["prepared"]
    assert prepared["lightgbm_params_from"] == lgbm["version"]
    assert prepared["lightgbm_params"]["num_leaves"] == 7
    registered = summary["registered"]
    assert registered["version"].startswith("blend-")
    assert set(registered) == {"version", "promoted", "reason", "validation_ndcg"}
    assert registered["promoted"] is True  # its lift matches the LightGBM champion's
    assert f"Registered {registered['version']}" in output
    blend = registry.load(settings.models_dir, registered["version"])
    best = summary["best"]["params"]
    assert blend.meta["model_kind"] == "blend" and blend.meta[TUNED_NEURAL_KEY] == best
    assert blend.meta[TUNED_PARAMS_KEY] == lgbm_params
    assert blend.meta[TUNED_FROM_KEY] == lgbm["version"]
    assert blend.meta["lightgbm"]["params"]["num_leaves"] == 7
    assert blend.meta["neural"]["settings"]["learning_rate"] == best["learning_rate"]

    # The blend now serves and carries the same LightGBM parameters: the study still resumes.
    assert registry.champion(settings.models_dir).version == blend.version
    _tune(
        *("--study", "blend", "--model", "blend", "--space", str(space), "--trials", "2"),
        "--no-register",
    )
    again = json.loads((tiny_store / "tuning" / "blend" / "report" / "summary.json").read_text())
    assert again["ran_this_call"] == [] and again["prepared"]["reused"] is True

    # A nightly blend retrain takes both parameter sets from the blend and passes them on.
    kind_blend = settings.model_copy(
        update={"ranker": settings.ranker.model_copy(update={"kind": "blend"})}
    )
    later = take_snapshot(settings, _as_of(LATER), tiny_store / "w2")
    assert choose_model(kind_blend, later, retrain=True).retrained
    retrained = max(registry.list_models(settings.models_dir), key=lambda r: r.as_of)
    assert retrained.as_of == later.as_of and retrained.meta["model_kind"] == "blend"
    assert retrained.meta[TUNED_PARAMS_KEY] == lgbm_params
    assert retrained.meta[TUNED_NEURAL_KEY] == best
    assert retrained.meta[TUNED_FROM_KEY] == blend.version
    assert retrained.meta["lightgbm"]["params"]["num_leaves"] == 7
    assert retrained.meta["neural"]["settings"]["dropout"] == best["dropout"]
