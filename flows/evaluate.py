"""`nightrec evaluate`: the protocol backtest at an as-of date, as a Prefect flow."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

from prefect import flow
from pydantic import BaseModel, Field

from tasks.evaluate.backtest import run_backtest
from tasks.evaluate.report import write_report
from tasks.features.snapshot import Snapshot, snapshot_task
from tasks.ingest.activity import check_covers, order_lines
from tasks.privacy.keys import owner_only_umask
from tasks.progress import log_to_prefect, stage_task
from tasks.settings import load_settings
from tasks.timeutil import start_of


class EvaluateParams(BaseModel):
    as_of: dt.date = Field(description="train before this day; truth from it on")
    horizon_days: int = Field(30, ge=1)
    home: str | None = None
    kinds: list[Literal["lightgbm", "neural", "blend"]] = Field(
        ["lightgbm", "neural", "blend"], description="model kinds beside the baselines"
    )
    device: Literal["auto", "cpu", "cuda"] | None = Field(
        None, description="where the neural ranker trains (default: settings)"
    )
    landing_dir: str | None = Field(
        None,
        description="the store's landing files: the user set becomes the protocol's, every "
        "customer with an order line (fee lines included) before T and in the window "
        "(default: settings; without one, customers with a purchase event)",
    )
    source: str | None = Field(None, description="source adapter of the landing files")


def backtest(snapshot: Snapshot, as_of: dt.datetime, params: EvaluateParams) -> dict[str, Any]:
    settings = load_settings(
        home=Path(params.home) if params.home else None,
        horizon_days=params.horizon_days,
        landing_dir=params.landing_dir,
        source=params.source,
    )
    if params.device is not None:
        neural = settings.neural.model_copy(update={"device": params.device})
        settings = settings.model_copy(update={"neural": neural})
    events = snapshot.events()
    lines = None
    if settings.landing_dir is not None:
        # Fee lines are no events: only the landing files hold the protocol's whole user set.
        lines = order_lines(settings.source, settings.landing_dir)
        check_covers(lines, events)
    result = run_backtest(
        events, snapshot.catalog(), as_of, settings, kinds=tuple(params.kinds), lines=lines
    )
    folder = settings.reports_dir / f"evaluate_as_of={as_of:%Y-%m-%d}_h={params.horizon_days}"
    command = f"nightrec evaluate --as-of {as_of:%Y-%m-%d} --horizon {params.horizon_days}"
    report = write_report(result, folder, command)
    return {**result.as_dict(), "report": str(report)}


backtest_task = stage_task("backtest", backtest)


@flow(name="evaluate", flow_run_name="evaluate-{params.as_of}")
def evaluate_flow(params: EvaluateParams) -> dict[str, Any]:
    log_to_prefect()
    owner_only_umask()
    settings = load_settings(home=Path(params.home) if params.home else None)
    as_of = start_of(params.as_of)
    work_dir = settings.work_dir / f"evaluate-{uuid.uuid4().hex[:8]}"
    # The snapshot reaches to the end of the truth window; the backtest cuts training at T.
    snapshot = snapshot_task(settings, as_of + dt.timedelta(days=params.horizon_days), work_dir)
    result = backtest_task(snapshot, as_of, params)
    shutil.rmtree(work_dir, ignore_errors=True)
    return result
