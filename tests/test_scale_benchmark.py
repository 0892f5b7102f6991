"""benchmarks/scale.py: stage parsing, RSS attribution and the growth-exponent fit.

Fed by hand: a stderr stream as the CLI writes it and RSS samples (monotonic s, KiB); no
subprocess, no Prefect."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_benchmark"] = module
    spec.loader.exec_module(module)
    return module


def line(stage: str, what: str) -> str:
    return f"10:00:00 INFO    nightrec.progress: {stage}: {what}"


T0 = 100.0  # the command's start (monotonic)
STDERR = [
    (T0 + 0.5, "10:00:00 WARNING some.library: a warning that is not a stage"),
    (T0 + 1.0, line("ingest-day", "started")),
    (T0 + 3.0, line("ingest-day", "done in 2.0 s")),
    (T0 + 3.0, line("snapshot", "started")),
    (T0 + 3.05, line("snapshot", "done in 0.0 s")),  # shorter than the sampling interval
    (T0 + 3.1, line("choose-model", "started")),
    (T0 + 3.2, "10:00:03 INFO    nightrec.rank: training window 1/2: as-of 2026-04-04"),
    (T0 + 4.0, "10:00:04 INFO    nightrec.rank: training window 2/2: as-of 2026-03-21"),
    (T0 + 5.0, "10:00:05 INFO    nightrec.rank: lightgbm round 50/300: valid ndcg@10 0.7"),
    (T0 + 8.1, line("choose-model", "done in 5.0 s")),
    (T0 + 8.2, line("score", "started")),
    (T0 + 9.0, line("score", "failed after 0.8 s")),
]
# KiB: 1024 KiB = 1 MiB, so the peaks below read in MiB as value / 1024.
SAMPLES = [
    (T0 + 0.2, 100 * 1024.0),  # start-up, outside every stage
    (T0 + 0.8, 300 * 1024.0),  # outside: the peak outside stages
    (T0 + 2.0, 200 * 1024.0),  # ingest-day
    (T0 + 2.9, 250 * 1024.0),  # ingest-day: its peak
    (T0 + 3.08, 260 * 1024.0),  # after snapshot (3.0-3.05): the sample just after it
    (T0 + 5.0, 900 * 1024.0),  # choose-model: its peak
    (T0 + 8.0, 400 * 1024.0),  # choose-model
    (T0 + 8.5, 500 * 1024.0),  # score
    (T0 + 9.5, 50 * 1024.0),  # after score, outside
]


def test_stage_durations_and_peaks(scale):
    result = scale.attribute(STDERR, SAMPLES, T0, T0 + 10.0)
    stages = result["stages"]
    assert list(stages) == ["ingest-day", "snapshot", "choose-model", "score"]
    # seconds as logged; span as the lines arrived
    assert stages["ingest-day"]["seconds"] == 2.0
    assert stages["ingest-day"]["span_s"] == 2.0
    assert stages["choose-model"]["seconds"] == 5.0
    assert stages["choose-model"]["span_s"] == 5.0
    assert stages["snapshot"]["seconds"] == 0.0
    assert stages["snapshot"]["span_s"] == 0.05
    assert stages["score"]["seconds"] == 0.8
    assert stages["ingest-day"]["start_s"] == 1.0
    # peaks: the largest sample inside each stage, in MiB
    assert stages["ingest-day"]["peak_mib"] == 250.0
    assert stages["choose-model"]["peak_mib"] == 900.0
    assert stages["score"]["peak_mib"] == 500.0
    # no sample inside the snapshot: the larger of the ones just before (250) and after (260)
    assert stages["snapshot"]["peak_mib"] == 260.0
    assert stages["score"]["outcome"] == "failed"
    assert stages["choose-model"]["outcome"] == "done"
    # outside stages: 100, 300 (before ingest-day) and 50 (after score)
    assert result["outside_peak_mib"] == 300.0
    assert result["before_first_stage_s"] == 1.0
    assert result["training_windows"] == 2
    assert result["lightgbm_round_lines"] == 1
    assert result["stage_seconds_total"] == pytest.approx(7.8)


def test_a_stage_open_when_the_command_ends_is_unfinished(scale):
    stream = [(T0 + 1.0, line("choose-model", "started"))]
    samples = [(T0 + 2.0, 1024.0 * 700), (T0 + 6.0, 1024.0 * 1500)]
    result = scale.attribute(stream, samples, T0, T0 + 6.0)  # killed at +6 s
    row = result["stages"]["choose-model"]
    assert row["outcome"] == "unfinished"
    assert row["seconds"] == 5.0  # no logged figure: the span up to the kill
    assert row["peak_mib"] == 1500.0
    assert result["outside_peak_mib"] is None


def test_a_repeated_stage_adds_up(scale):
    stream = [
        (T0 + 1.0, line("ingest-day", "started")),
        (T0 + 2.0, line("ingest-day", "done in 1.0 s")),
        (T0 + 5.0, line("ingest-day", "started")),
        (T0 + 8.0, line("ingest-day", "done in 3.0 s")),
    ]
    samples = [(T0 + 1.5, 1024.0 * 10), (T0 + 3.0, 1024.0 * 99), (T0 + 6.0, 1024.0 * 20)]
    row = scale.attribute(stream, samples, T0, T0 + 9.0)["stages"]["ingest-day"]
    assert (row["count"], row["seconds"], row["span_s"], row["peak_mib"]) == (2, 4.0, 4.0, 20.0)


@pytest.mark.parametrize(
    ("power", "coefficient"), [(1.0, 2.0), (0.5, 3.0), (2.0, 1e-6), (0.0, 7.0)]
)
def test_growth_exponent_recovers_a_power_law(scale, power, coefficient):
    events = [3e5, 1e6, 3e6, 1e7]
    values = [coefficient * e**power for e in events]
    assert scale.growth_exponent(events, values) == pytest.approx(power, abs=1e-9)


def test_growth_exponent_least_squares_by_hand(scale):
    # x = ln(events) = (0, 1, 2) ln 2, y = ln(values) = (0, 2, 2) ln 2: the middle point is
    # off the line. Sxy = (-1)(-4/3) + 0 + (1)(2/3) = 2 (ln 2)^2 and Sxx = 2 (ln 2)^2: slope 1.
    events = [1.0, 2.0, 4.0]
    values = [1.0, 4.0, 4.0]
    assert scale.growth_exponent(events, values) == pytest.approx(1.0)
    x = [math.log(e) for e in events]
    y = [math.log(v) for v in values]
    mx, my = sum(x) / 3, sum(y) / 3
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum(
        (a - mx) ** 2 for a in x
    )
    assert scale.growth_exponent(events, values) == pytest.approx(slope)


def test_growth_exponent_needs_two_positive_sizes(scale):
    assert scale.growth_exponent([1e6], [10.0]) is None
    assert scale.growth_exponent([1e6, 1e7], [10.0, None]) is None
    assert scale.growth_exponent([1e6, 1e7], [0.0, 5.0]) is None
    assert scale.growth_exponent([1e6, 1e6], [1.0, 5.0]) is None


def test_sizes_parse(scale):
    assert [scale.parse_size(s) for s in ("0.3M", "1M", "500k", "30M", "1200")] == [
        300_000,
        1_000_000,
        500_000,
        30_000_000,
        1200,
    ]


def test_fits_per_stage_over_the_sizes_that_ran(scale):
    def run(wall, peak, choose):
        return {
            "outcome": "exited",
            "exit_code": 0,
            "wall_s": wall,
            "peak_rss_mib": peak,
            "stages": {"choose-model": {"span_s": choose, "peak_mib": peak}},
        }

    sizes = [
        {"label": "1M", "events": 1e6, "runs": {"retrain": run(10.0, 100.0, 4.0)}},
        {"label": "4M", "events": 4e6, "runs": {"retrain": run(40.0, 200.0, 64.0)}},
        {
            "label": "16M",
            "events": 1.6e7,
            "runs": {"retrain": {**run(1.0, 1.0, 1.0), "outcome": "timeout"}},
        },
    ]
    f = scale.fits(sizes)["retrain"]
    assert f["sizes"] == ["1M", "4M"]  # the timed-out size is left out of the fit
    assert f["wall_s"] == pytest.approx(1.0)
    assert f["peak_rss_mib"] == pytest.approx(0.5)
    assert f["stages"]["choose-model"]["seconds"] == pytest.approx(2.0)
    assert f["stages"]["choose-model"]["peak_mib"] == pytest.approx(0.5)
    above = scale.fits(sizes, min_events=2_000_000)["retrain"]
    assert above["sizes"] == ["4M"]
    assert above["wall_s"] is None  # one size left: no slope
