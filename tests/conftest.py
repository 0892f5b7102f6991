"""Shared fixtures: a scratch NIGHTREC_HOME per test and one Prefect harness per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# ranker.kind=auto trains the network too where it fits the time budget, so what a test's
# nightly run serves would depend on the machine (CUDA or not, its speed). Tests run LightGBM
# unless they set another kind (the tests of auto set it); fixtures that assume a LightGBM
# model also pin it themselves. The CLI tests' subprocesses inherit this.
os.environ["NIGHTREC_RANKER__KIND"] = "lightgbm"

ONLINE_RETAIL_DAYS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail" / "by-day"
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Real Prefect in ephemeral mode with a throw-away database, started once."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _hypothesis_profiles() -> None:
    """`ci` (the default, what `make test` and CI run): bounded and reproducible; `dev` digs
    deeper. Pick with HYPOTHESIS_PROFILE=dev."""
    from hypothesis import HealthCheck, settings

    common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
    settings.register_profile("ci", max_examples=200, derandomize=True, **common)
    settings.register_profile("dev", max_examples=1000, **common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_hypothesis_profiles()
