"""Prefect task: ingest the run day's landing file (and the catalog beside it)."""

from __future__ import annotations

import datetime as dt
import logging

from tasks.ingest.landing import find_day_files
from tasks.ingest.load import ingest_catalogs, ingest_landing, result_record
from tasks.progress import stage_task
from tasks.safety.faults import kill_if_armed
from tasks.settings import Settings

log = logging.getLogger("nightrec.ingest")


def ingest_run_day(settings: Settings, run_date: dt.date) -> list[dict]:
    """Load the day's landing file; a day without one is a warning (shops close)."""
    landing = settings.landing_dir
    if landing is None:
        log.info("no landing folder configured: using the store as it is")
        return []
    for catalog in ingest_catalogs(settings.db_path, landing):
        log.info(catalog.summary())
    if not find_day_files(landing, run_date, run_date):
        log.warning("no landing file for %s under %s: running on earlier days", run_date, landing)
        return []
    results = ingest_landing(
        settings.db_path,
        settings.source,
        landing,
        max_bad_share=settings.max_bad_share,
        start=run_date,
        end=run_date,
        chunk_bytes=settings.safety.chunk_bytes,
        published_root=settings.recommendations_dir,
        fault=settings.safety.fault,
        memory_limit_mib=settings.safety.ingest_memory_mib,
        privacy=settings.privacy,
    )
    for result in results:
        log.info(result.summary())
    kill_if_armed(settings.safety.fault, "after_ingest")
    return [result_record(r) for r in results]


ingest_day_task = stage_task("ingest-day", ingest_run_day)
