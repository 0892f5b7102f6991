"""Run health checks as plain functions: hand-computed PSI, thresholds in both directions,
the same-weekday volume, duplicates, newcomers, list quality and typed settings."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from tasks.monitor import checks as c
from tasks.protocol.drift import (
    EPSILON,
    categorical_psi,
    profile,
    psi,
    psi_against,
    psi_of_shares,
    quantile_edges,
    shares,
)
from tasks.settings import MonitorChecks, load_settings

DAY = dt.date(2026, 3, 12)  # a Thursday


def test_psi_of_shares_by_hand() -> None:
    # (0.6-0.5) ln(0.6/0.5) + (0.4-0.5) ln(0.4/0.5) = 0.1 * (ln 1.2 - ln 0.8)
    assert psi_of_shares([0.5, 0.5], [0.6, 0.4]) == pytest.approx(0.1 * math.log(1.5))
    assert psi_of_shares([0.25] * 4, [0.25] * 4) == 0.0
    # An empty bin counts as EPSILON, not zero: finite.
    expected = (1 - 0.5) * math.log(1 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    assert psi_of_shares([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected)


def test_quantile_bins_and_shares_by_hand() -> None:
    ref = np.arange(1.0, 11.0)  # 1..10
    edges = quantile_edges(ref, 2)
    assert edges.tolist() == [5.5]
    # bins (-inf, 5.5], (5.5, inf), then missing
    assert shares(np.array([1.0, 6.0, 7.0, np.nan]), edges).tolist() == [0.25, 0.5, 0.25]
    assert psi(ref, ref, 5) == 0.0
    shifted = ref + 100.0  # everything lands in the top bin
    assert psi(ref, shifted, 2) == pytest.approx(psi_of_shares([0.5, 0.5, 0.0], [0.0, 1.0, 0.0]))
    assert psi_against(profile(ref, 2), shifted) == pytest.approx(psi(ref, shifted, 2))


def test_categorical_psi_by_hand() -> None:
    assert categorical_psi({"view": 8, "purchase": 2}, {"view": 8, "purchase": 2}) == 0.0
    got = categorical_psi({"view": 5, "purchase": 5}, {"view": 6, "purchase": 4})
    assert got == pytest.approx(psi_of_shares([0.5, 0.5], [0.4, 0.6]))


@pytest.mark.parametrize(
    ("name", "measure", "status"),
    [
        ("volume", 1.0, "ok"),
        ("volume", 0.5, "warn"),  # fold 2 > warn 1.75, < fail 4
        ("volume", 2.0, "warn"),
        ("volume", 0.2, "fail"),  # fold 5
        ("volume", 1.75, "ok"),  # the threshold itself passes
        ("duplicates", 0.5, "fail"),
        ("duplicates", 0.1, "warn"),
        ("duplicates", 0.0, "ok"),
        ("coverage", 0.4, "warn"),  # below: lower is worse
        ("coverage", 1.4, "ok"),
        ("overlap", 0.0, "ok"),  # no thresholds: never alarms
        ("score_ties", 1.0, "fail"),
        ("input_drift", None, "skip"),
    ],
)
def test_judge_applies_the_check_direction(name: str, measure: float | None, status: str) -> None:
    judged = c.judge(c.Check(name, measure, None, measure, "x"), MonitorChecks())
    assert judged.status == status
    bound = getattr(MonitorChecks(), name)
    assert (judged.warn, judged.fail) == (bound.warn, bound.fail)


def test_thresholds_are_typed_and_one_level_overrides_keep_the_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NIGHTREC_MONITOR__CHECKS__VOLUME__FAIL", "1.8")
    volume = load_settings().monitor.checks.volume
    assert (volume.warn, volume.fail) == (1.75, 1.8)
    monkeypatch.setenv("NIGHTREC_MONITOR__CHECKS__VOLUME__FAIL", "1.5")  # below warn
    with pytest.raises(ValidationError, match=r"fail \(1.5\) is below warn \(1.75\)"):
        load_settings()
    monkeypatch.setenv("NIGHTREC_MONITOR__CHECKS__VOLUME__FAIL", "0.5")  # a fold is >= 1
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        load_settings()
    monkeypatch.delenv("NIGHTREC_MONITOR__CHECKS__VOLUME__FAIL")
    monkeypatch.setenv("NIGHTREC_MONITOR__CHECKS__COVERAGE__FAIL", "0.9")  # lower bound
    with pytest.raises(ValidationError, match=r"fail \(0.9\) is above warn \(0.5\)"):
        load_settings()


def _events(rows: list[tuple[str, str, str, dt.datetime, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "user_id": pl.Utf8,
            "item_id": pl.Utf8,
            "event_type": pl.Utf8,
            "ts": pl.Datetime("us"),
            "price": pl.Float64,
        },
        orient="row",
    ).with_columns(pl.lit(1).alias("quantity"))


def _at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour))


def test_volume_against_the_median_of_the_same_weekday() -> None:
    rows = []
    for weeks_ago, n in ((1, 10), (2, 30), (3, 20), (4, 1000)):
        day = DAY - dt.timedelta(weeks=weeks_ago)
        rows += [("u", "i", "view", _at(day), 1.0)] * n
    rows += [("u", "i", "view", _at(DAY - dt.timedelta(days=1)), 1.0)] * 500  # a Wednesday
    rows += [("u", "i", "view", _at(DAY), 1.0)] * 10
    check = c.volume(_events(rows), DAY, weeks=4)
    # median(10, 30, 20, 1000) = 25: other weekdays never count
    assert (check.value, check.reference, check.measure) == (10, 25.0, 0.4)
    # Weeks before the first event are left out rather than counted as zeros.
    first_two = c.volume(_events(rows), DAY, weeks=8)
    assert first_two.reference == 25.0
    small = c.volume(_events(rows), DAY, weeks=4, min_rows=26)  # median 25: too few to judge
    assert small.measure is None and small.detail.endswith("fewer than 26")
    closed = c.volume(_events(rows[:-10]), DAY, weeks=4)  # no events on the day
    assert closed.measure is None and closed.detail.endswith(
        "none on the day (a closed day, or a feed that missed it)"
    )
    assert c.judge(closed, MonitorChecks()).status == "warn"  # published, and said
    alone = c.volume(_events(rows[-10:]), DAY, weeks=4)
    assert alone.measure is None and "no earlier Thursday" in alone.detail


def test_duplicates_and_newcomers() -> None:
    old = [("u1", "i1", "purchase", _at(DAY - dt.timedelta(days=3)), 2.0)]
    today = [
        ("u1", "i1", "view", _at(DAY), 2.0),
        ("u1", "i1", "view", _at(DAY), 2.0),  # repeats the row above in full
        ("u2", "i2", "view", _at(DAY, 11), 3.0),
        ("u3", "i1", "view", _at(DAY, 12), 3.0),
    ]
    events = _events(old + today)
    day = c.day_events(events, DAY)
    assert c.duplicates(day).measure == 0.25
    start = dt.datetime.combine(DAY, dt.time())
    customers = c.newcomers(events, day, start, "user_id")
    assert (customers.measure, customers.detail) == (2 / 3, "2 of 3")
    assert c.newcomers(events, day, start, "item_id").measure == 0.5


def test_quarantine_share() -> None:
    assert c.quarantine(200, 5).measure == 0.025
    assert c.quarantine(None, None).measure is None


def _recs(lists: dict[str, list[tuple[str, float, str]]]) -> pl.DataFrame:
    rows = [
        (user, item, rank, score, source)
        for user, items in lists.items()
        for rank, (item, score, source) in enumerate(items, start=1)
    ]
    return pl.DataFrame(
        rows, schema=["user_id", "item_id", "rank", "score", "source"], orient="row"
    )


def test_fallback_score_ties_and_overlap_by_hand() -> None:
    recs = _recs(
        {
            "a": [("i1", 0.9, "model"), ("i2", 0.5, "model")],
            "b": [("i1", 0.3, "model"), ("i3", 0.3, "model")],  # tied
            "c": [("i4", -1.0, "popularity_fallback"), ("i5", -2.0, "popularity_fallback")],
        }
    )
    assert c.fallback(recs, "source").measure == pytest.approx(1 / 3)
    assert c.score_ties(recs, "source", "score").measure == 0.5
    yesterday = _recs({"a": [("i1", 1.0, "model"), ("i9", 0.0, "model")], "z": [("i1", 1, "m")]})
    # only a is in both: 1 of its 2 items kept
    assert c.overlap(recs, yesterday, k=2).measure == 0.5
    assert c.overlap(recs, None, k=2).measure is None


def test_relative_checks_use_the_median_of_earlier_runs() -> None:
    check = c.relative("coverage", 0.2, [0.4, 0.5, 0.3, float("nan")], "x")
    assert (check.reference, check.measure) == (0.4, 0.5)
    assert c.relative("coverage", 0.2, [], "x").measure is None


def test_input_drift_sees_a_price_shift_and_not_a_resample() -> None:
    rng = np.random.default_rng(0)
    start = dt.datetime(2026, 1, 1)

    def frame(prices: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "ts": [start] * prices.size,
                "price": prices,
                "quantity": np.ones(prices.size, dtype=np.int64),
                "event_type": ["view"] * prices.size,
            }
        )

    reference = frame(rng.lognormal(3.0, 0.6, 5000))
    same = c.input_drift(reference, frame(rng.lognormal(3.0, 0.6, 400)), 10, 100, "w")
    shifted = c.input_drift(reference, frame(rng.lognormal(3.0, 0.6, 400) * 3), 10, 100, "w")
    assert same.measure < 0.1 < 1.0 < shifted.measure
    assert shifted.detail.startswith("vs w: price ")
    few = c.input_drift(reference, frame(rng.lognormal(3.0, 0.6, 50)), 10, 100, "w")
    assert few.measure is None and "fewer than 100" in few.detail


def test_feature_drift_is_the_share_of_features_that_moved() -> None:
    rng = np.random.default_rng(1)
    ref = pl.DataFrame({f"f{i}": rng.normal(size=2000) for i in range(4)})
    profiles = {name: profile(ref.get_column(name).to_numpy(), 10) for name in ref.columns}
    now = pl.DataFrame(
        {f"f{i}": rng.normal(size=1000) + (5.0 if i == 0 else 0.0) for i in range(4)}
    )
    check = c.feature_drift(profiles, now, 100, 0.25)
    assert check.measure == 0.25 and check.detail.startswith("1 of 4 features with PSI > 0.25")
    assert c.feature_drift(None, now, 100, 0.25).measure is None


def test_rolling_ndcg_against_repurchase_on_the_days_since() -> None:
    as_of = dt.datetime(2026, 3, 1)
    before, after = as_of - dt.timedelta(days=2), as_of + dt.timedelta(days=1)
    events = _events(
        [
            ("a", "i1", "purchase", before, 1.0),
            ("a", "i2", "purchase", after, 1.0),
            ("b", "i3", "purchase", before, 1.0),
            ("b", "i3", "purchase", after, 1.0),
        ]
    )
    published = _recs({"a": [("i2", 1.0, "model")], "b": [("i3", 1.0, "model")]})
    baseline = _recs({"a": [("i1", 1.0, "x")], "b": [("i3", 1.0, "x")]})
    check = c.rolling_ndcg(published, events, baseline, as_of, 7, k=1)
    # ours: both customers hit at rank 1 (NDCG 1); repurchase: only b (mean 0.5)
    assert (check.value, check.reference, check.measure) == (1.0, 0.5, 2.0)
    assert c.rolling_ndcg(None, events, None, as_of, 7, 1).measure is None


def test_a_model_alarm_forces_a_retrain_only_when_the_setting_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.monitor.health import ModelHealth, retrain_decision

    old = c.judge(c.model_age(10, 7, "lgbm-x"), MonitorChecks())
    assert old.status == "warn" and old.measure == pytest.approx(10 / 7)
    early = ModelHealth([old])
    asked, notes = retrain_decision(load_settings(), early, None)
    assert asked is None and notes[0].startswith("model health: model_age 1.43 (warn 1)")
    assert notes[0].endswith("(monitor.retrain_on_alarm is off)")
    monkeypatch.setenv("NIGHTREC_MONITOR__RETRAIN_ON_ALARM", "true")
    asked, notes = retrain_decision(load_settings(), early, None)
    assert asked is True and notes == [f"retrain forced by the model health: {old.line()}"]
    assert retrain_decision(load_settings(), early, False) == (False, [])  # --no-retrain wins
    fine = ModelHealth([c.judge(c.model_age(3, 7, "lgbm-x"), MonitorChecks())])
    assert retrain_decision(load_settings(), fine, None) == (None, [])


def test_the_report_shows_the_health_and_says_when_it_was_not_measured() -> None:
    from tasks.monitor.health import summary
    from tasks.ops.run_report import health_lines

    checks = [
        c.judge(c.Check("volume", 40, 100.0, 0.4, "40 events vs median 100"), MonitorChecks()),
        c.judge(c.Check("duplicates", 0.0, None, 0.0, "0 of 40 events"), MonitorChecks()),
    ]
    lines = health_lines(summary(checks, 0.25), "trends.png")
    assert lines[0] == "## Health: WARN"
    assert "- volume 0.4 (warn 1.75, fail 4): 40 events vs median 100" in lines
    assert "| duplicates | ok | 0 | 0.05 | 0.3 | 0 of 40 events |" in lines
    assert "![health over the last runs](trends.png)" in lines
    assert health_lines(None)[0] == "## Health: not measured (monitor.enabled is off)"


def test_a_store_from_before_run_health_has_no_history(tmp_path) -> None:
    import duckdb

    from tasks.monitor.health import read_history
    from tasks.monitor.trends import last_runs, trend_rows

    db = tmp_path / "nightrec.duckdb"
    duckdb.connect(str(db)).execute("create table events (x integer)").close()
    assert read_history(db, DAY, DAY + dt.timedelta(days=1)).height == 0
    assert trend_rows(last_runs(db, None, 30)) == []
