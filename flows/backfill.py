"""Backfill: the nightly flow for each day of a range, in date order, resumable."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field, model_validator

from flows.nightly import NightlyParams, nightly_flow, run_settings
from tasks.errors import DegradedRun
from tasks.ingest.stale import stale_dates
from tasks.progress import log_to_prefect
from tasks.publish.writer import is_complete

log = logging.getLogger("nightrec.flow")


class BackfillParams(BaseModel):
    """Parameters of a backfill (what the Prefect UI shows as a form)."""

    start: dt.date = Field(description="first run date")
    end: dt.date = Field(description="last run date (inclusive)")
    force: bool = Field(False, description="rerun days whose output is already complete")
    landing_dir: str | None = None
    source: str | None = None
    home: str | None = None
    allow_degraded: bool | None = None
    workers: int | None = Field(None, ge=0, description="local Dask worker processes")
    dask_address: str | None = Field(None, description="an existing Dask scheduler")

    @model_validator(mode="after")
    def _ordered(self) -> BackfillParams:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]


@flow(name="backfill", flow_run_name="backfill-{params.start}-{params.end}")
def backfill_flow(params: BackfillParams) -> list[dict[str, Any]]:
    """One nightly run per day, oldest first (a retrain depends on earlier days); a day whose
    published output is complete is skipped unless `force` or flagged stale."""
    days = params.days()
    log_to_prefect()
    rows: list[dict[str, Any]] = []
    first = run_settings(NightlyParams(home=params.home))
    stale = set(stale_dates(first.db_path))  # inputs changed after these days were published
    degraded: list[str] = []
    for i, day in enumerate(days, start=1):
        nightly = NightlyParams(
            run_date=day,
            landing_dir=params.landing_dir,
            source=params.source,
            home=params.home,
            allow_degraded=params.allow_degraded,
            workers=params.workers,
            dask_address=params.dask_address,
        )
        settings = run_settings(nightly)
        if day in stale:
            log.info(
                "[%d/%d] %s is stale (a late file changed its input): rerun", i, len(days), day
            )
        elif not params.force and is_complete(settings.recommendations_dir, day):
            rows.append({"run_date": day.isoformat(), "state": "skipped (complete)"})
            log.info("[%d/%d] %s already complete: skipped", i, len(days), day)
            continue
        started = time.perf_counter()
        try:
            manifest, state = nightly_flow(nightly), "completed"
        except DegradedRun as exc:  # published; the later days still run, the end says so
            manifest, state = exc.result, "degraded"
            degraded.append(f"{day}: {'; '.join(manifest['degraded'])}")
        seconds = time.perf_counter() - started
        rows.append(
            {
                "run_date": day.isoformat(),
                "state": state,
                "rows": manifest["rows"],
                "users": manifest["users"],
                "model_version": manifest["model_version"],
                "retrained": manifest["retrained"],
                "health": (manifest.get("health") or {}).get("status", "off"),
                "seconds": round(seconds, 2),
            }
        )
        log.info("[%d/%d] %s %s in %.1f s", i, len(days), day, state, seconds)
    if degraded:
        raise DegradedRun(f"{len(degraded)} of {len(days)} day(s) degraded: {degraded[0]}", rows)
    return rows
