"""`nightrec drill` scenarios run as tests: each must pass with no row lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.drill import SCENARIOS, run_drill, to_markdown
from tasks.ingest.landing import IngestError


def test_bad_rows_scenario_passes_with_no_row_lost(tmp_path: Path) -> None:
    # The store-lock scenario's behaviour is tested in test_ingest_streams.py; the rest need
    # nightly runs and are run by `nightrec drill` (results in benchmarks/results/drill.md).
    (row,) = run_drill(tmp_path, ["bad rows above threshold"])
    assert (row.passed, row.rows_lost) == (True, 0), row.observed
    assert row.observed.startswith("rejected (66.7% of 24 rows broke the contract), 0 rows")
    assert row.observed.endswith("fixed file loaded")
    assert "| bad rows above threshold |" in to_markdown([row])


@pytest.mark.flow
def test_corrupt_model_falls_back_to_the_baseline_and_says_so(
    prefect_harness: None, tmp_path: Path
) -> None:
    (row,) = run_drill(tmp_path, ["corrupt model file"])
    assert row.passed and row.rows_lost == 0, row.observed
    assert "published 175 rows with baseline-repurchase" in row.observed
    assert "status degraded" in row.observed
    assert "failed (LightGBMError: Unknown model format" in row.observed


def test_unknown_scenario_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="unknown drill scenario"):
        run_drill(tmp_path, ["meteor strike"])
    assert len(SCENARIOS) == 6
