"""The nightly flow for one date: ingest+validate -> snapshot -> model -> score -> publish."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from prefect import flow, task
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from tasks.features.snapshot import snapshot_task
from tasks.ingest.stale import clear_stale_task
from tasks.ingest.task import ingest_day_task
from tasks.locks import run_date_lock
from tasks.monitor.health import health_task, model_checks_task, retrain_decision_task
from tasks.ops.inputs import check_input, snapshot_input_state
from tasks.ops.run_report import report_task
from tasks.ops.run_status import enforce_status_task, run_fields
from tasks.privacy.keys import owner_only_umask, pseudonym_key, secure_home
from tasks.privacy.retention import privacy_fields, retention_task
from tasks.progress import log_to_prefect
from tasks.publish.writer import publish_task, recover_task
from tasks.rank.task import choose_model_task, score_task
from tasks.settings import Settings, load_settings
from tasks.timeutil import run_as_of
from tasks.validate.run_report import report_path
from tasks.validate.task import check_topk_task

log = logging.getLogger("nightrec.flow")
check_input_task = task(name="check-input")(check_input)


class NightlyParams(BaseModel):
    """Parameters of one nightly run (what the Prefect UI shows as a form)."""

    run_date: dt.date | None = Field(
        None, description="recommend for the days after this one (default: yesterday)"
    )
    retrain: bool | None = Field(None, description="force (true) or forbid (false) retraining")
    landing_dir: str | None = Field(None, description="folder of daily landing files")
    source: str | None = Field(None, description="source adapter of the landing files")
    home: str | None = Field(None, description="NIGHTREC_HOME for this run")
    device: Literal["auto", "cpu", "cuda"] | None = Field(
        None, description="where the neural ranker trains and scores (default: settings)"
    )
    allow_degraded: bool | None = Field(
        None, description="a fallback publish counts as success (default: settings)"
    )
    workers: int | None = Field(
        None, ge=0, description="score on a local Dask cluster of this many worker processes"
    )
    dask_address: str | None = Field(
        None, description="score on the Dask scheduler at this address (tcp://host:8786)"
    )


def run_settings(params: NightlyParams) -> Settings:
    settings = load_settings(
        landing_dir=Path(params.landing_dir) if params.landing_dir else None,
        source=params.source,
        home=Path(params.home) if params.home else None,
        allow_degraded=params.allow_degraded,
    )
    if params.workers is not None or params.dask_address is not None:
        dask = settings.dask.model_copy(
            update={
                k: v
                for k, v in {"workers": params.workers, "address": params.dask_address}.items()
                if v is not None
            }
        )
        settings = settings.model_copy(update={"dask": dask})
    if params.device is None:
        return settings
    neural = settings.neural.model_copy(update={"device": params.device})
    return settings.model_copy(update={"neural": neural})


def scheduled_run_date(settings: Settings) -> dt.date:
    """A run without a date serves the night before its scheduled start (in the schedule's
    timezone), so a run that starts late, or is retried, still serves its own night."""
    start = flow_run.scheduled_start_time or dt.datetime.now(dt.UTC)
    return start.astimezone(ZoneInfo(settings.ops.timezone)).date() - dt.timedelta(days=1)


def _run_id(run_date: dt.date) -> str:
    prefect_id = flow_run.get_id()
    return str(prefect_id) if prefect_id else f"{run_date:%Y%m%d}-{uuid.uuid4().hex[:8]}"


@flow(name="nightly", flow_run_name="nightly-{params.run_date}", log_prints=True)
def nightly_flow(params: NightlyParams) -> dict[str, Any]:
    """Recommend for every known customer as of the end of `run_date`."""
    log_to_prefect()
    owner_only_umask()
    settings = run_settings(params)
    pseudonym_key(settings.privacy)  # pseudonyms without a key: refused before any work
    secure_home(settings.home)
    if params.run_date is None:
        params = params.model_copy(update={"run_date": scheduled_run_date(settings)})
    # Two triggers for one date (schedule + UI, or a retried backfill) never write side by side.
    with run_date_lock(settings.home, params.run_date):
        return _run_locked(params, settings)


def _run_locked(params: NightlyParams, settings: Settings) -> dict[str, Any]:
    run_id = _run_id(params.run_date)
    work_dir = settings.work_dir / run_id
    report = report_path(settings.validation_dir, params.run_date, run_id)
    recover_task(settings.recommendations_dir, params.run_date)
    ingested = ingest_day_task(settings, params.run_date)
    retention = retention_task(settings, run_as_of(params.run_date))
    snapshot = snapshot_task(settings, run_as_of(params.run_date), work_dir)
    input_note = check_input_task(
        snapshot_input_state(snapshot, params.run_date),
        settings.safety.max_input_age_days,
        settings.safety.allow_stale_input,
        "the run's snapshot",
    )
    early = model_checks_task(settings, snapshot, params.run_date)
    retrain, monitor_notes = retrain_decision_task(settings, early, params.retrain)
    choice = choose_model_task(settings, snapshot, retrain)
    scored = score_task(settings, snapshot, choice, work_dir, report)
    check_topk_task(settings, snapshot, scored.recs_path, report)
    # A failed check raises here: the swap below never happens, the previous partition stays.
    health = health_task(settings, snapshot, params.run_date, run_id, choice, scored, early)
    notes = [input_note] if input_note else []
    manifest = publish_task(
        scored.recs_path,
        settings.recommendations_dir,
        params.run_date,
        run_id,
        scored.model_version,
        settings.k,
        run_fields(
            snapshot,
            choice,
            scored,
            ingested,
            report,
            [*notes, *monitor_notes],
            privacy=privacy_fields(settings, retention),
            health=health,
        ),
        settings.safety.fault,
    )
    clear_stale_task(settings.db_path, params.run_date)
    shutil.rmtree(work_dir, ignore_errors=True)
    report_task(manifest, settings.reports_dir, settings.models_dir, settings)
    log.info(
        "%s: %s rows for %s users with %s (%s)",
        params.run_date,
        f"{manifest['rows']:,}",
        f"{manifest['users']:,}",
        manifest["model_version"],
        scored.fallback or choice.reason,
    )
    enforce_status_task(manifest, settings.allow_degraded)
    return manifest
