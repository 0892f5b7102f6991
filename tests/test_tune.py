"""Tuning: search spaces, grid coverage, Bayesian improvement on a known function, resume
after an interruption (in process and with kill -9 of a `nightrec tune` subprocess)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tune_objectives import DEFAULTS, quadratic, register_quadratic, unregister_quadratic

from tasks.settings import load_settings
from tasks.tune.objective import ObjectiveUnavailable
from tasks.tune.objectives import OBJECTIVES
from tasks.tune.space import SpaceError, load_space
from tasks.tune.study import (
    REQUEUED_ATTR,
    StudySpec,
    make_pruner,
    open_study,
    storage,
    study_dir,
    study_lock,
)

ROOT = Path(__file__).resolve().parents[1]
GRID_X = [-1.0, 0.0, 0.5, 1.0]
GRID_Y = [-0.5, 0.5, 1.5]
SPACE = {
    "params": {
        "x": {"type": "float", "low": -2.0, "high": 2.0, "grid": GRID_X},
        "y": {"type": "float", "low": -2.0, "high": 2.0, "grid": GRID_Y},
    }
}


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "quadratic.yml"
    path.write_text(json.dumps(SPACE))  # JSON is YAML
    return path


@pytest.fixture
def quadratic_model(space_file: Path, tmp_path: Path) -> Iterator[Path]:
    """Registers the quadratic objective; yields the file its evaluations are logged to."""
    log = tmp_path / "evaluations.jsonl"
    register_quadratic(space_file, log=log)
    yield log
    unregister_quadratic()


def _tune(home: Path, **overrides: object) -> dict:
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.tune import TuneParams, tune_flow

    params = TuneParams(model="quadratic", as_of="2024-01-01", home=str(home), **overrides)
    return tune_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(params)


def _study(home: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage(home / "tuning" / name))


def _artifact_rows(key: str) -> list[dict]:
    """The rows of the newest Prefect table artifact under `key`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"no artifact {key}"
    newest = max(found, key=lambda a: a.created)
    return json.loads(newest.data) if isinstance(newest.data, str) else newest.data


def _points(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[float, float]]:
    return sorted((t.params["x"], t.params["y"]) for t in trials)


# --- search spaces -----------------------------------------------------------------------


def test_lightgbm_space_reads_its_grid_and_bounds() -> None:
    from tasks.tune.lgbm_objective import LightGBMObjective

    objective = LightGBMObjective()
    space = load_space(objective.default_space())
    objective.check_space(space)
    assert space.grid() == {
        "learning_rate": [0.05, 0.1],
        "num_leaves": [15, 31, 63],
        "min_data_in_leaf": [20, 50, 150],
    }
    assert space.grid_size() == 18
    leaves = space.distributions()["num_leaves"]
    assert (leaves.low, leaves.high, leaves.log) == (7, 63, True)
    # Today's defaults lie inside the space, so a Bayesian study can start from them.
    defaults = objective.default_params(load_settings())
    for name, dist in space.distributions().items():
        assert dist._contains(dist.to_internal_repr(defaults[name])), name


def test_a_trial_killed_while_drawing_is_requeued_at_its_grid_point(
    home: Path, space_file: Path
) -> None:
    """A run killed between two draws leaves a RUNNING trial with a grid_id and only x."""
    from tasks.tune.study import GridPlan

    folder = study_dir(home / "tuning", "partial")
    space = load_space(space_file)
    spec = StudySpec("partial", "quadratic", "grid", "2024-01-01", space.fingerprint(), 7)
    pruner = make_pruner("none", 0, "grid")
    with study_lock(folder):
        study = open_study(folder, spec, space, pruner, "maximize")
        trial = study.ask()
        x = trial.suggest_float("x", -2.0, 2.0)
    with study_lock(folder):
        study = open_study(folder, spec, space, pruner, "maximize")
        plan = GridPlan.of(study.sampler)
        assert study.trials[0].state == TrialState.FAIL and study.trials[0].params == {"x": x}
        assert plan.requeue_failed(study) == 1
        queued = study.ask(space.grid_distributions())
    grid_point = plan.points[study.trials[0].system_attrs["grid_id"]]
    assert (queued.params["x"], queued.params["y"]) == grid_point and grid_point[0] == x
    assert queued.user_attrs[REQUEUED_ATTR] == 0
    assert sorted(plan.points) == sorted(itertools.product(GRID_X, GRID_Y))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"x": {"type": "float", "low": 0, "high": 1, "grid": [2]}}, "outside [0.0, 1.0]"),
        ({"x": {"type": "int", "low": 1, "high": 9, "grid": [1.5]}}, "is not an integer"),
        ({"x": {"type": "float", "low": 0, "high": 1, "log": True}}, "needs low > 0"),
        ({"x": {"type": "categorical"}}, "needs `choices`"),
        ({"x": {"type": "float", "low": 1, "high": 1}}, "needs low < high"),
    ],
)
def test_bad_spaces_are_refused_with_the_reason(tmp_path: Path, spec: dict, message: str) -> None:
    path = tmp_path / "space.yml"
    path.write_text(json.dumps({"params": spec}))
    with pytest.raises(SpaceError, match=r"space\.yml: params\.x") as info:
        load_space(path)
    assert message in str(info.value)


def test_lightgbm_space_refuses_parameters_the_ranker_does_not_have(tmp_path: Path) -> None:
    from tasks.tune.lgbm_objective import LightGBMObjective

    path = tmp_path / "space.yml"
    path.write_text("params:\n  max_depth: {type: int, low: 2, high: 8}\n")
    with pytest.raises(SpaceError, match="not LightGBM ranker parameters: max_depth"):
        LightGBMObjective().check_space(load_space(path))


def test_unknown_or_pending_models_fail_with_one_line(home: Path) -> None:
    from tasks.tune.objective import ObjectiveRegistry

    pending = ObjectiveRegistry()
    pending.mark_pending("catboost", "not written yet")
    with pytest.raises(ObjectiveUnavailable, match=r"^--model catboost: not written yet$"):
        pending.get("catboost")
    assert OBJECTIVES.names() == ["blend", "lightgbm", "neural"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "tune",
            "--study",
            "s",
            "--model",
            "xgboost",
            "--home",
            str(home),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: --model xgboost: no such model to tune (known: blend, lightgbm, neural)",
        "hint: tune a model that exists: --model lightgbm, neural or blend",
    ]


# --- studies through the flow --------------------------------------------------------------


@pytest.mark.flow
def test_grid_covers_exactly_its_grid_and_a_rerun_adds_nothing(
    prefect_harness: None, quadratic_model: Path, home: Path
) -> None:
    info = _tune(home, study="grid", search="grid", trials=100)
    study = _study(home, "grid")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert _points(complete) == sorted(itertools.product(GRID_X, GRID_Y))
    assert len(study.trials) == 12 and info["stopped_because"] == "grid covered"
    for t in complete:
        assert t.value == pytest.approx(quadratic(t.params["x"], t.params["y"]))
    assert info["best"]["params"] == {"x": 0.5, "y": -0.5}  # nearest grid point to (0.3, -0.2)
    assert info["best"]["value"] == pytest.approx(-(0.2**2) - 0.3**2)
    assert {"optimization_history.png", "param_importances.png", "best_params.png"} <= {
        p.name for p in (home / "tuning" / "grid" / "report").iterdir()
    }

    rows = _artifact_rows("tune-grid")
    assert sorted((r["x"], r["y"]) for r in rows) == sorted(itertools.product(GRID_X, GRID_Y))
    assert {r["state"] for r in rows} == {"COMPLETE"}

    again = _tune(home, study="grid", search="grid", trials=100)
    assert again["ran_this_call"] == [] and len(_study(home, "grid").trials) == 12
    evaluations = [json.loads(line) for line in quadratic_model.read_text().splitlines()]
    assert len([e for e in evaluations if e["event"] == "end"]) == 12


@pytest.mark.flow
def test_bayes_starts_from_the_defaults_and_improves_on_a_known_function(
    prefect_harness: None, quadratic_model: Path, home: Path
) -> None:
    info = _tune(home, study="bayes", search="bayes", trials=24)
    study = _study(home, "bayes")
    first = study.trials[0]
    assert first.params == DEFAULTS and first.value == pytest.approx(-6.13)
    assert info["default"] == {"trial": 0, "value": pytest.approx(-6.13)}
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 24
    # TPE beats its own random start-up phase and gets near the optimum (0.3, -0.2).
    startup_best = max(t.value for t in study.trials[1:9] if t.value is not None)
    assert study.best_value > startup_best
    assert study.best_value > -0.05
    assert abs(study.best_params["x"] - 0.3) < 0.2 and abs(study.best_params["y"] + 0.2) < 0.2


@pytest.mark.flow
def test_a_study_left_running_by_a_dead_run_resumes_and_requeues_its_points(
    prefect_harness: None, quadratic_model: Path, home: Path, space_file: Path
) -> None:
    """What a killed run leaves behind: two COMPLETE trials and two RUNNING ones."""
    folder = study_dir(home / "tuning", "resume")
    space = load_space(space_file)
    spec = StudySpec("resume", "quadratic", "grid", "2024-01-01", space.fingerprint(), 42)
    with study_lock(folder):
        study = open_study(folder, spec, space, make_pruner("none", 0, "grid"), "maximize")
        trials = [study.ask(space.grid_distributions()) for _ in range(4)]
        for t in trials[:2]:
            study.tell(t, quadratic(t.params["x"], t.params["y"]))
    orphaned = {t.number: (t.params["x"], t.params["y"]) for t in trials[2:]}

    info = _tune(home, study="resume", search="grid", trials=100)
    study = _study(home, "resume")
    assert min(info["ran_this_call"]) == 4  # numbering continues
    assert [study.trials[n].state for n in orphaned] == [TrialState.FAIL, TrialState.FAIL]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert _points(complete) == sorted(itertools.product(GRID_X, GRID_Y))
    requeued = {t.user_attrs[REQUEUED_ATTR] for t in complete if REQUEUED_ATTR in t.user_attrs}
    assert requeued == set(orphaned)
    ran = [json.loads(line)["params"] for line in quadratic_model.read_text().splitlines()]
    done_before = {(t.params["x"], t.params["y"]) for t in trials[:2]}
    assert not done_before & {(p["x"], p["y"]) for p in ran}  # finished points not rerun


def test_a_second_process_cannot_run_the_same_study(home: Path) -> None:
    folder = study_dir(home / "tuning", "busy")
    with study_lock(folder):
        code = (
            "import sys; from pathlib import Path; from tasks.tune.study import study_lock\n"
            f"with study_lock(Path({str(folder)!r})): pass"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
    assert result.returncode == 1
    assert f"study busy is being run by another process (pid {os.getpid()})" in result.stderr


@pytest.mark.flow
def test_kill_9_mid_study_then_rerun_resumes_without_repeating_a_point(
    prefect_harness: None, home: Path, space_file: Path, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    log = tmp_path / "evaluations.jsonl"
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the harness's server: no cold start
        "TUNE_TEST_SPACE": str(space_file),
        "TUNE_TEST_DELAY_S": "0.4",
        "TUNE_TEST_LOG": str(log),
    }
    command = [sys.executable, str(ROOT / "tests" / "tune_cli.py"), "tune", "--study", "k9"]
    command += ["--model", "quadratic", "--search", "grid", "--trials", "100"]
    command += ["--as-of", "2024-01-01", "--parallel", "2", "--home", str(home)]
    first = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    journal = home / "tuning" / "k9" / "journal.log"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if journal.is_file() and journal.stat().st_size:
            trials = _study(home, "k9").trials
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            # Kill while a trial runs: between two trials there is a moment with none.
            if len(done) >= 4 and any(t.state == TrialState.RUNNING for t in trials):
                break
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    before = _study(home, "k9").trials
    finished_before = {t.number: t for t in before if t.state == TrialState.COMPLETE}
    assert 4 <= len(finished_before) < 12
    assert any(t.state == TrialState.RUNNING for t in before)

    second = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    after = _study(home, "k9").trials
    assert [t.number for t in after] == list(range(len(after)))
    new = after[len(before) :]
    assert new and min(t.number for t in new) == len(before)  # numbering continues
    for number, t in finished_before.items():  # finished trials kept as they were
        assert (after[number].state, after[number].value) == (TrialState.COMPLETE, t.value)
    for t in before:
        if t.state == TrialState.RUNNING:
            assert after[t.number].state == TrialState.FAIL
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert _points(complete) == sorted(itertools.product(GRID_X, GRID_Y))  # exactly once each
    events = [json.loads(line) for line in log.read_text().splitlines()]
    second_pids = {e["pid"] for e in events} - {first.pid}
    rerun_points = {(e["params"]["x"], e["params"]["y"]) for e in events if e["pid"] in second_pids}
    assert not rerun_points & {(t.params["x"], t.params["y"]) for t in finished_before.values()}


# --- the loop and the pruning hook, without Prefect ------------------------------------------


class _Done:
    def __init__(self, result: object) -> None:
        self._result = result

    def result(self) -> object:
        return self._result


def test_timeout_stops_handing_out_batches_and_running_ones_finish(space_file: Path) -> None:
    from tasks.tune.runner import drive_study
    from tasks.tune.study import make_sampler
    from tasks.tune.trial import TrialResult

    space = load_space(space_file)
    spec = StudySpec("t", "quadratic", "bayes", "2024-01-01", space.fingerprint(), 1)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec, space))
    ticks = iter(range(0, 1000, 10))  # each look at the clock is 10 s later

    def submit(trial: optuna.Trial) -> _Done:
        value = quadratic(trial.params["x"], trial.params["y"])
        return _Done(TrialResult(trial.number, "complete", value))

    outcome = drive_study(study, space, "bayes", 50, 3, 25, submit, clock=lambda: next(ticks))
    # Clock reads: start 0, then 10 and 20 (< 25: a batch of 3 each), 30 (>= 25: stop).
    assert outcome.stopped_because == "timeout" and outcome.ran == [0, 1, 2, 3, 4, 5]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 6


def test_a_batch_where_every_trial_fails_stops_the_study(space_file: Path) -> None:
    from tasks.tune.runner import drive_study
    from tasks.tune.study import TuneError
    from tasks.tune.trial import TrialResult

    space = load_space(space_file)
    study = optuna.create_study(direction="maximize")

    def submit(trial: optuna.Trial) -> _Done:
        return _Done(TrialResult(trial.number, "fail", None, error="ValueError: bad data"))

    with pytest.raises(TuneError, match="every trial of a batch failed, first: ValueError: bad"):
        drive_study(study, space, "bayes", 10, 2, None, submit)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert study.trials[0].user_attrs["error"] == "ValueError: bad data"


def test_prune_hook_stops_a_trial_below_the_median_of_earlier_ones(home: Path) -> None:
    from tasks.tune.trial import JournalPruneHook

    folder = study_dir(home / "tuning", "prune")
    folder.mkdir(parents=True)
    study = optuna.create_study(
        study_name="prune",
        storage=storage(folder),
        direction="maximize",
        pruner=make_pruner("median", 2, "bayes"),
    )
    for value in (1.0, 2.0, 3.0):
        trial = study.ask()
        trial.report(value, 0)
        study.tell(trial, value)
    slow, fast = study.ask(), study.ask()
    JournalPruneHook(folder, "prune", fast._trial_id, "median", 2, "bayes")(0, 2.5)
    with pytest.raises(optuna.TrialPruned):
        JournalPruneHook(folder, "prune", slow._trial_id, "median", 2, "bayes")(0, 1.5)
    assert study.trials[3].intermediate_values == {0: 1.5}
    # A grid study never prunes: it must score every point it claims to cover.
    grid_hook = JournalPruneHook(folder, "prune", slow._trial_id, "median", 2, "grid")
    grid_hook(1, 0.0)
