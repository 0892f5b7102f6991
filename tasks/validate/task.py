"""Prefect task: check the scored top-K against its contract before it may be published."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tasks.constants import ITEM_ID
from tasks.features.snapshot import Snapshot
from tasks.progress import stage_task
from tasks.settings import Settings
from tasks.validate.run_report import enforce
from tasks.validate.topk import validate_topk


def check_topk(settings: Settings, snapshot: Snapshot, recs_path: Path, report: Path) -> None:
    """Raise ContractViolation (nothing gets published) when the top-K breaks its contract."""
    reports = validate_topk(
        pl.read_parquet(recs_path),
        settings.k,
        snapshot.catalog().get_column(ITEM_ID).to_list(),
        snapshot.users().to_list(),  # the ids alone: every event stays on disk
        settings.safety.forbidden_items,
    )
    enforce(report, "top_k", reports)


check_topk_task = stage_task("check-top-k", check_topk)
