"""The embedded default: a synthetic shop, ingested and backfilled end to end."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.backfill import BackfillParams, backfill_flow
from tasks.ingest.load import IngestionResult, ingest_catalog, ingest_landing
from tasks.rank import registry
from tasks.settings import Settings
from tasks.synth.shop import GroceryShopConfig, ShopConfig, generate_shop, write_landing

log = logging.getLogger("nightrec.demo")
DEMO_SOURCE = "canonical"


@dataclass(frozen=True)
class DemoResult:
    landing_dir: Path
    backfill: list[dict[str, Any]]
    last_day: dt.date
    validation: dict[str, Any] | None  # the serving model's protocol metrics beside baselines


def run_demo(
    settings: Settings,
    config: ShopConfig,
    backfill_days: int,
    on_file: Callable[[int, int, IngestionResult], None] | None = None,
) -> DemoResult:
    """Generate the shop, ingest all but its last days, then backfill those nightly.

    A GroceryShopConfig makes a grocery chain (landing/grocery) instead of the web shop.
    """
    shop = generate_shop(config)
    grocery = isinstance(config, GroceryShopConfig)
    landing = settings.home / "landing" / ("grocery" if grocery else "synthetic")
    report = write_landing(shop, landing)
    last_day = config.start + dt.timedelta(days=config.days - 1)
    first_run = last_day - dt.timedelta(days=backfill_days - 1)
    log.info(
        "synthetic %s shop: %s customers, %s items, %s events over %s days in %s",
        "grocery" if grocery else "web",
        config.n_customers,
        config.n_items,
        f"{shop.events.height:,}",
        config.days,
        landing,
    )
    ingest_catalog(settings.db_path, report.catalog_path)
    ingest_landing(
        settings.db_path,
        DEMO_SOURCE,
        landing,
        max_bad_share=settings.max_bad_share,
        end=first_run - dt.timedelta(days=1),
        on_file=on_file,
        privacy=settings.privacy,
    )
    rows = backfill_flow(
        BackfillParams(
            start=first_run,
            end=last_day,
            landing_dir=str(landing),
            source=DEMO_SOURCE,
            home=str(settings.home),
        )
    )
    versions = [
        r.get("model_version") for r in rows if r.get("model_version", "").startswith("lgbm")
    ]
    validation = None
    if versions:
        validation = registry.load(settings.models_dir, versions[-1]).meta.get("validation")
    return DemoResult(landing, rows, last_day, validation)
