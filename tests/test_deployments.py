"""The deployments' schedules and parameters (served by `nightrec serve`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from deployments.backfill import backfill_deployment
from deployments.nightly import nightly_deployment
from tasks.settings import load_settings


def test_nightly_deployment_runs_at_two_in_the_configured_timezone(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path, landing_dir=tmp_path / "landing", source="x", ops={"timezone": "Asia/Tokyo"}
    )
    deployment = nightly_deployment(settings)
    assert deployment.name == "nightly"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 2 * * *"
    assert schedule.schedule.timezone == "Asia/Tokyo"
    # run_date is left out so each scheduled run takes yesterday.
    assert deployment.parameters == {
        "params": {"home": str(tmp_path), "landing_dir": str(tmp_path / "landing"), "source": "x"}
    }
    # The UI form: the run date is a date field, described.
    params_schema = deployment._parameter_openapi_schema.definitions["NightlyParams"]
    run_date = params_schema["properties"]["run_date"]
    assert {"format": "date", "type": "string"} in run_date["anyOf"]
    assert "yesterday" in run_date["description"]


def test_backfill_deployment_is_manual_and_requires_a_range(tmp_path: Path) -> None:
    deployment = backfill_deployment(load_settings(home=tmp_path))
    assert deployment.name == "backfill" and deployment.schedules == []
    schema = deployment._parameter_openapi_schema.definitions["BackfillParams"]
    assert set(schema["required"]) == {"start", "end"}


def test_an_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown timezone 'Mars/Base'"):
        load_settings(ops={"timezone": "Mars/Base"})


def test_weekly_tuning_deployment_runs_a_study_per_week(tmp_path: Path) -> None:
    from deployments.tuning import tuning_deployment

    deployment = tuning_deployment(load_settings(home=tmp_path))
    assert deployment.name == "weekly"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 4 * * 0"
    params = deployment.parameters["params"]
    assert params["study"] == "weekly-lightgbm-{as_of}" and params["trials"] == 30
    assert params["model"] == "lightgbm" and params["search"] == "bayes"
    assert params["register_best"] is True  # the winner goes through the gate
