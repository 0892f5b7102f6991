"""The feature table contract, checked after features are built and before scoring."""

from __future__ import annotations

import polars as pl

from tasks.validate.contracts import SuiteReport, check_frame

TABLE = "features"


def validate_features(frame: pl.DataFrame) -> SuiteReport:
    return check_frame(TABLE, frame)
