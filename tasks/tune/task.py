"""Prefect tasks of the tuning flow around the trials: prepare data, report, register."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.features.snapshot import Snapshot
from tasks.settings import Settings
from tasks.tune.objectives import OBJECTIVES
from tasks.tune.report import publish_artifact, write_report


def prepare_data(model: str, settings: Settings, snapshot: Snapshot, data_dir: Path) -> dict:
    """Once per study (reused by a rerun when its inputs did not change)."""
    return OBJECTIVES.get(model).prepare(settings, snapshot, data_dir)


def report_study(study: optuna.Study, folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    info = write_report(study, folder, extra)
    best = info.get("best") or {}
    publish_artifact(
        study,
        f"Trials of study {study.study_name} ({info.get('model')}, {info.get('search')}, "
        f"as-of {info.get('as_of')}); best {best.get('value')} in trial {best.get('trial')}",
    )
    return info


def register_best(
    model: str,
    settings: Settings,
    snapshot: Snapshot,
    params: dict[str, Any],
    tuning: dict[str, Any],
) -> dict[str, Any] | None:
    return OBJECTIVES.get(model).register_best(settings, snapshot, params, tuning)


prepare_task = task(name="tune-prepare", cache_policy=NO_CACHE)(prepare_data)
report_task = task(name="tune-report", cache_policy=NO_CACHE)(report_study)
register_task = task(name="tune-register-best", cache_policy=NO_CACHE)(register_best)
