"""The tuning report in the study's folder: plots (PNG), trials table, summary, and a Prefect
table artifact of the trials for the UI."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tasks.tune.study import DEFAULTS_ATTR, REQUEUED_ATTR

PLOTS = ("optimization_history.png", "param_importances.png", "best_params.png")


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial, oldest first: number, state, value, seconds, parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "trial": t.number,
            "state": t.state.name,
            "value": round(t.value, 6) if t.value is not None else None,
            "seconds": t.user_attrs.get("seconds"),
            "note": _note(t),
        }
        row.update({name: _round(v) for name, v in sorted(t.params.items())})
        rows.append(row)
    return rows


def _note(t: FrozenTrial) -> str:
    if t.user_attrs.get(DEFAULTS_ATTR):
        return "default parameters"
    if REQUEUED_ATTR in t.user_attrs:
        return f"re-run of trial {t.user_attrs[REQUEUED_ATTR]}"
    if t.state == TrialState.FAIL:
        return str(t.user_attrs.get("error") or "interrupted")
    return ""


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def default_trial(study: optuna.Study) -> FrozenTrial | None:
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get(DEFAULTS_ATTR):
            return t
    return None


def summary(study: optuna.Study) -> dict[str, Any]:
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    counts = {s: states.count(s) for s in sorted(set(states))}
    out: dict[str, Any] = {"study": study.study_name, **study.user_attrs, "trials": counts}
    out = {k: v for k, v in out.items() if not k.startswith("orphaned_trial_")}
    try:
        best = study.best_trial
    except ValueError:
        return {**out, "best": None}
    out["best"] = {"trial": best.number, "value": best.value, "params": best.params}
    default = default_trial(study)
    if default is not None:
        out["default"] = {"trial": default.number, "value": default.value}
    return out


def _plot_best_params(best: FrozenTrial, path: Path) -> None:
    import matplotlib.pyplot as plt

    names = sorted(best.params)
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.2))
    ax.axis("off")
    cells = [[n, f"{_round(best.params[n])}"] for n in names]
    table = ax.table(cellText=cells, colLabels=["parameter", "best value"], loc="center")
    table.scale(1, 1.4)
    ax.set_title(f"Best trial {best.number}: value {best.value:.5f}")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def write_plots(study: optuna.Study, folder: Path) -> dict[str, str]:
    """PNG plots; a plot that cannot be drawn yet (e.g. importances from one trial) is
    skipped with the reason instead of failing the study."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as ovm

    folder.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawers = {
        "optimization_history.png": lambda: ovm.plot_optimization_history(study),
        "param_importances.png": lambda: ovm.plot_param_importances(study),
    }
    for name, draw in drawers.items():
        if len(complete) < 2:
            status[name] = "skipped: needs 2 complete trials"
            continue
        try:
            with warnings.catch_warnings():
                # The matplotlib backend is marked experimental; its output is what we want.
                warnings.simplefilter("ignore", ExperimentalWarning)
                ax = draw()
            ax.figure.savefig(folder / name, dpi=100, bbox_inches="tight")
            plt.close(ax.figure)
            status[name] = "written"
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            status[name] = f"skipped: {exc}"
    if complete:
        _plot_best_params(study.best_trial, folder / "best_params.png")
        status["best_params.png"] = "written"
    else:
        status["best_params.png"] = "skipped: no complete trial"
    return status


def artifact_key(study_name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "tune-" + re.sub(r"[^a-z0-9-]+", "-", study_name.lower()).strip("-")


def write_report(study: optuna.Study, folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """summary.json, trials.json and the plots under `folder`; returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    info = {**summary(study), **extra, "plots": write_plots(study, folder)}
    (folder / "trials.json").write_text(json.dumps(rows, indent=2, default=str))
    (folder / "summary.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
    return info


def publish_artifact(study: optuna.Study, description: str) -> None:
    from prefect.artifacts import create_table_artifact

    rows = [
        {
            k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
            for k, v in row.items()
        }
        for row in trial_rows(study)
    ]
    create_table_artifact(table=rows, key=artifact_key(study.study_name), description=description)
