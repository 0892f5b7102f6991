"""Backfill through the nightly deployment: one flow run per date on whatever serves it.

Driven from the CLI against the Prefect API (PREFECT_API_URL). Each date gets its own flow run
named `nightly-D`; its idempotency key is the date plus the number of runs for that date that
already ended, so two backfills started at once ask for the same run and Prefect creates it once,
while a rerun after a failure gets a fresh one. A date whose output is complete is skipped; a
date already being run (by the schedule, the UI or a killed backfill) is waited for, not
started again. Dates that retrain run alone and in date order (`tasks/ops/backfill_plan.py`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed

from deployments.nightly import NAME as NIGHTLY_DEPLOYMENT
from deployments.nightly import default_run_parameters
from flows.nightly import nightly_flow
from tasks.errors import NightrecError
from tasks.locks import holder_alive, run_date_lock_path
from tasks.ops.backfill_plan import plan_waves
from tasks.publish.writer import is_complete, read_manifest
from tasks.rank import registry
from tasks.settings import Settings

log = logging.getLogger("nightrec.flow")
POLL_SECONDS = 2.0
ORPHANED = "Orphaned"


class DeploymentMissing(NightrecError, RuntimeError):
    """The nightly deployment is not registered with the Prefect API."""

    hint = "`nightrec serve` registers the deployments"


def deployment_name() -> str:
    return f"{nightly_flow.name}/{NIGHTLY_DEPLOYMENT}"


def run_name(day: dt.date) -> str:
    return f"nightly-{day.isoformat()}"


def backfill_via_deployment(
    settings: Settings,
    days: list[dt.date],
    force: bool = False,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the nightly deployment for `days`; returns one row per date, in date order."""
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(deployment_name())
        except ObjectNotFound:
            raise DeploymentMissing(
                f"deployment {deployment_name()} is not registered at the Prefect API; "
                "start `nightrec serve` first"
            ) from None

        rows: dict[dt.date, dict[str, Any]] = {}
        todo = []
        for day in sorted(days):
            if not force and is_complete(settings.recommendations_dir, day):
                rows[day] = {"run_date": day.isoformat(), "state": "skipped (complete)"}
                # A run killed after publishing (with `serve`) still shows RUNNING: close it.
                for run in _runs_for(client, deployment.id, day):
                    if run.state is not None and run.state.is_running():
                        _mark_if_orphaned(client, run, settings)
            else:
                todo.append(day)

        def newest_model_as_of(as_of: dt.datetime) -> dt.datetime | None:
            record = registry.newest_before(settings.models_dir, as_of)
            return record.as_of if record else None

        waves = plan_waves(todo, newest_model_as_of, settings.ranker.retrain_every_days)

        def run_day(day: dt.date) -> dict[str, Any]:
            started = time.perf_counter()
            flow_run = _wait(client, _start_or_join(client, deployment.id, settings, day), settings)
            if flow_run.state is not None and flow_run.state.name == ORPHANED:
                # Its process died with the serving process; this date gets a fresh run.
                flow_run = _wait(
                    client, _start_or_join(client, deployment.id, settings, day), settings
                )
            row = _row(settings, day, flow_run, time.perf_counter() - started)
            if on_done:
                on_done(row)
            return row

        with ThreadPoolExecutor(max_workers=settings.ops.backfill_concurrency) as pool:
            for wave in waves:
                for row in pool.map(run_day, wave):
                    rows[dt.date.fromisoformat(row["run_date"])] = row
    return [rows[day] for day in sorted(rows)]


def _runs_for(client: SyncPrefectClient, deployment_id: UUID, day: dt.date) -> list[FlowRun]:
    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name(day)])),
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
    )


def _start_or_join(
    client: SyncPrefectClient, deployment_id: UUID, settings: Settings, day: dt.date
) -> UUID:
    """The id of the flow run that does `day`: one already under way, or a new one."""
    runs = _runs_for(client, deployment_id, day)
    active = [r for r in runs if r.state is not None and not r.state.is_final()]
    if active:
        log.info("%s: joining flow run %s (%s)", day, active[0].name, active[0].state_name)
        return active[0].id
    parameters = {"params": {**default_run_parameters(settings), "run_date": day.isoformat()}}
    flow_run = client.create_flow_run_from_deployment(
        deployment_id,
        parameters=parameters,
        name=run_name(day),
        idempotency_key=f"{run_name(day)}#{len(runs)}",
        tags=["backfill"],
    )
    return flow_run.id


def _wait(client: SyncPrefectClient, flow_run_id: UUID, settings: Settings) -> FlowRun:
    """Poll until the run ends. A run left RUNNING by a killed `nightrec serve` never ends by
    itself: once it has run for `orphan_after_s` and no live process holds its date's lock, it
    is marked Crashed (named ORPHANED) so the date can be run again."""
    while True:
        flow_run = client.read_flow_run(flow_run_id)
        state = flow_run.state
        if state is not None and state.is_final():
            return flow_run
        if (
            state is not None
            and state.is_running()
            and _mark_if_orphaned(client, flow_run, settings)
        ):
            return client.read_flow_run(flow_run_id)
        time.sleep(POLL_SECONDS)


def _mark_if_orphaned(client: SyncPrefectClient, flow_run: FlowRun, settings: Settings) -> bool:
    """Mark a RUNNING flow run whose process is gone as Crashed (named ORPHANED)."""
    if not _orphaned(flow_run, settings):
        return False
    log.warning("%s: its process is gone; marking it Crashed", flow_run.name)
    client.set_flow_run_state(
        flow_run.id,
        Crashed(name=ORPHANED, message="its process is gone: no live holder of the lock"),
        force=True,
    )
    return True


def _orphaned(flow_run: FlowRun, settings: Settings) -> bool:
    if flow_run.start_time is None:
        return False
    running_s = (dt.datetime.now(dt.UTC) - flow_run.start_time).total_seconds()
    day = dt.date.fromisoformat(flow_run.parameters["params"]["run_date"])
    return running_s > settings.ops.orphan_after_s and not holder_alive(
        run_date_lock_path(settings.home, day)
    )


def _row(settings: Settings, day: dt.date, flow_run: FlowRun, seconds: float) -> dict[str, Any]:
    state = flow_run.state
    manifest = read_manifest(settings.recommendations_dir, day) or {}
    if manifest.get("run_id") != str(flow_run.id):
        manifest = {}  # published by another run: this run's counts are not in it
    row: dict[str, Any] = {
        "run_date": day.isoformat(),
        "state": state.name if state else "unknown",
        "flow_run": flow_run.name,
        "rows": manifest.get("rows", 0),
        "users": manifest.get("users", 0),
        "model_version": manifest.get("model_version", ""),
        "seconds": round(seconds, 1),
    }
    if state is not None and not state.is_completed():
        row["message"] = (state.message or "").splitlines()[0] if state.message else ""
    return row
