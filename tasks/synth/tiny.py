"""The tiny synthetic shop and the short protocol that drills and flow tests run in seconds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tasks.ingest.load import ingest_catalog, ingest_landing
from tasks.synth.shop import SynthShopConfig, generate_shop, write_landing

TINY_SHOP = SynthShopConfig(n_customers=40, n_items=30, n_categories=4, days=45, seed=3)
TINY_K = 5
# NIGHTREC_* settings of a short protocol: 3 windows a week apart, tiny leaves, one thread.
TINY_PROTOCOL_ENV = {
    "NIGHTREC_K": str(TINY_K),
    "NIGHTREC_HORIZON_DAYS": "7",
    "NIGHTREC_RANKER__N_WINDOWS": "3",
    "NIGHTREC_RANKER__WINDOW_STEP_DAYS": "7",
    "NIGHTREC_RANKER__MIN_DATA_IN_LEAF": "5",
    "NIGHTREC_RANKER__NUM_THREADS": "1",
}
# Tiny days of a dozen rows carry the shop's injected malformed rows at a high share.
TINY_MAX_BAD_SHARE = 0.5


def stage_tiny_shop(home: Path, landing: Path, end: dt.date) -> None:
    """Write the tiny shop's landing files and ingest its catalog and days up to `end`."""
    report = write_landing(generate_shop(TINY_SHOP), landing)
    ingest_catalog(home / "nightrec.duckdb", report.catalog_path)
    ingest_landing(
        home / "nightrec.duckdb", "canonical", landing, max_bad_share=TINY_MAX_BAD_SHARE, end=end
    )
