"""Run health under real Prefect on a small synthetic shop (300 customers, 80 items): a day
with half its volume, a day duplicated in full, a shifted price distribution and a constant
scorer in place of the ranker are each caught by their check; `warn` publishes and says so,
`fail` publishes nothing (the previous partition stays) and exits 4; 30 normal days raise
nothing."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.constants import MANIFEST_NAME
from tasks.errors import HealthCheckFailed
from tasks.ingest.load import ingest_catalog, ingest_landing
from tasks.publish.writer import partition_dir
from tasks.synth.shop import SynthShopConfig, generate_shop, write_landing

pytestmark = pytest.mark.flow
SHOP = SynthShopConfig(n_customers=300, n_items=80, n_categories=5, days=100, seed=5)
DAY0 = SHOP.start + dt.timedelta(days=60)  # the first nightly run (trains the model)
DAY1 = DAY0 + dt.timedelta(days=1)  # the day each scenario spoils
ENV = {
    "NIGHTREC_K": "5",
    "NIGHTREC_HORIZON_DAYS": "7",
    "NIGHTREC_RANKER__N_WINDOWS": "3",
    "NIGHTREC_RANKER__WINDOW_STEP_DAYS": "7",
    "NIGHTREC_RANKER__MIN_DATA_IN_LEAF": "5",
    "NIGHTREC_RANKER__NUM_THREADS": "1",
    "NIGHTREC_RANKER__KIND": "lightgbm",  # the asserts read a LightGBM model
    "NIGHTREC_MAX_BAD_SHARE": "0.5",
}


@pytest.fixture(scope="module")
def base_home(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """The shop ingested up to DAY0 - 1 and one nightly run on DAY0 (a model is trained)."""
    from flows.nightly import NightlyParams, nightly_flow

    home = tmp_path_factory.mktemp("monitor") / "home"
    home.mkdir()
    landing = home / "landing"
    report = write_landing(generate_shop(SHOP), landing)
    ingest_catalog(home / "nightrec.duckdb", report.catalog_path)
    ingest_landing(
        home / "nightrec.duckdb",
        "canonical",
        landing,
        max_bad_share=0.5,
        end=DAY0 - dt.timedelta(days=1),
    )
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**ENV, "NIGHTREC_HOME": str(home)}.items():
            mp.setenv(name, value)
        manifest = nightly_flow(
            NightlyParams(run_date=DAY0, landing_dir=str(landing), source="canonical")
        )
    assert manifest["retrained"] is True and manifest["health"]["status"] == "ok"
    return home


@pytest.fixture
def shop_home(base_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the base home for one scenario, its settings in the environment."""
    home = tmp_path / "home"
    shutil.copytree(base_home, home)
    for name, value in {**ENV, "NIGHTREC_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    return home


def _day_file(home: Path, day: dt.date) -> Path:
    return home / "landing" / "events" / f"{day.isoformat()}.csv"


def _spoil(home: Path, day: dt.date, how: str, factor: float = 3.0) -> None:
    path = _day_file(home, day)
    rows = pl.read_csv(path, infer_schema=False)
    if how == "half":
        rows = rows.filter(pl.int_range(pl.len()) % 2 == 0)
    elif how == "twice":
        rows = pl.concat([rows, rows])
    elif how == "price":
        price = pl.col("price").cast(pl.Float64, strict=False) * factor
        rows = rows.with_columns(price.round(2).cast(pl.Utf8))
    rows.write_csv(path)


def _run(home: Path, day: dt.date, landing: bool = True, **params: object) -> dict:
    from flows.nightly import NightlyParams, nightly_flow

    landing_dir = {"landing_dir": str(home / "landing"), "source": "canonical"} if landing else {}
    return nightly_flow(NightlyParams(run_date=day, **landing_dir, **params))


def _stored(home: Path, day: dt.date) -> dict[str, dict]:
    from tasks.monitor.health import read_history

    rows = read_history(home / "nightrec.duckdb", day, day + dt.timedelta(days=1))
    return {r["check_name"]: r for r in rows.iter_rows(named=True)}


def _manifest(home: Path, day: dt.date) -> dict | None:
    path = partition_dir(home / "recommendations", day) / MANIFEST_NAME
    return json.loads(path.read_text()) if path.exists() else None


def test_a_half_volume_day_warns_and_publishes(shop_home: Path) -> None:
    _spoil(shop_home, DAY1, "half")
    manifest = _run(shop_home, DAY1)
    health = manifest["health"]
    assert manifest["status"] == "ok" and health["status"] == "warn"
    assert [w.split(" ")[0] for w in health["warnings"]] == ["volume"]
    volume = health["checks"]["volume"]
    assert volume["status"] == "warn" and 0.4 < volume["measure"] < 0.6
    assert _manifest(shop_home, DAY1) == manifest  # published, warning and all
    assert _stored(shop_home, DAY1)["volume"]["status"] == "warn"
    report = (shop_home / "reports" / "nightly" / f"run_date={DAY1}.md").read_text()
    assert "## Health: WARN" in report and "\n- volume 0.4" in report
    png = shop_home / "reports" / "nightly" / f"trends-run_date={DAY1}.png"
    assert f"]({png.name})" in report and png.read_bytes()[:4] == b"\x89PNG"


def test_a_half_volume_day_fails_with_a_lower_fail_level_and_keeps_the_partition(
    shop_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main
    from tasks.ingest.load import ingest_landing

    first = _run(shop_home, DAY1)  # a normal night publishes DAY1
    assert first["health"]["status"] == "ok"
    _spoil(shop_home, DAY1, "half")  # then the feed is replaced by half of itself
    ingest_landing(
        shop_home / "nightrec.duckdb",
        "canonical",
        shop_home / "landing",
        max_bad_share=0.5,
        start=DAY1,
        end=DAY1,
        replace=True,
    )
    monkeypatch.setenv("NIGHTREC_MONITOR__CHECKS__VOLUME__FAIL", "1.8")
    monkeypatch.setattr(sys, "argv", ["nightrec", "run", "--date", str(DAY1)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 4
    err = capsys.readouterr().err.splitlines()
    assert err[-2].startswith(f"error: {DAY1} not published: health check failed: volume 0.")
    assert "(warn 1.75, fail 1.8)" in err[-2]
    assert err[-1].startswith("hint: see `nightrec monitor`")
    assert _manifest(shop_home, DAY1) == first  # the previous partition stays
    stored = _stored(shop_home, DAY1)
    assert stored["volume"]["status"] == "fail" and stored["volume"]["run_id"] != first["run_id"]


def test_a_day_duplicated_in_full_fails_the_duplicates_check(shop_home: Path) -> None:
    _spoil(shop_home, DAY1, "twice")
    with pytest.raises(HealthCheckFailed) as failed:
        _run(shop_home, DAY1)
    health = failed.value.health
    assert [line.split(" ")[0] for line in health["failed"]] == ["duplicates"]
    assert health["checks"]["duplicates"]["measure"] == pytest.approx(0.5, abs=0.01)
    assert health["checks"]["volume"]["status"] == "warn"  # twice the events, too
    assert _manifest(shop_home, DAY1) is None  # nothing published for the day
    assert _manifest(shop_home, DAY0) is not None


@pytest.mark.parametrize(("factor", "status"), [(1.25, "warn"), (4.0, "fail")])
def test_a_shifted_price_distribution_is_input_drift(
    shop_home: Path, factor: float, status: str
) -> None:
    _spoil(shop_home, DAY1, "price", factor)
    if status == "fail":
        with pytest.raises(HealthCheckFailed) as failed:
            _run(shop_home, DAY1)
        health = failed.value.health
        assert [line.split(" ")[0] for line in health["failed"]] == ["input_drift"]
    else:
        health = _run(shop_home, DAY1)["health"]
        assert [line.split(" ")[0] for line in health["warnings"]] == ["input_drift"]
    drift = health["checks"]["input_drift"]
    assert drift["status"] == status
    parts = dict(p.rsplit(" ", 1) for p in drift["detail"].split(": ", 1)[1].split(", "))
    assert max(parts, key=lambda k: float(parts[k])) == "price"


class ConstantScorer:
    def score(self, frame: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime) -> np.ndarray:
        return np.zeros(frame.height)


class ConstantKind:
    """A ranker that gives every candidate the same score."""

    name = "constant"
    registry_prefix = "constant"

    def train(self, ctx):
        from tasks.rank.kinds import Trained

        meta = {
            **ctx.base_meta(),
            "model_kind": self.name,
            "validation": ctx.validate(self.name, ConstantScorer()),
        }
        return Trained(self.name, ConstantScorer(), meta, "every candidate scores 0\n")

    def load(self, record, settings):
        return ConstantScorer()


def test_a_constant_scorer_fails_the_score_ties_check(
    shop_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.features.snapshot import take_snapshot
    from tasks.rank import registry
    from tasks.rank.kinds import KINDS
    from tasks.rank.task import choose_model
    from tasks.settings import load_settings
    from tasks.timeutil import run_as_of

    monkeypatch.setitem(KINDS, "constant", ConstantKind())
    monkeypatch.setenv("NIGHTREC_RANKER__KIND", "constant")
    settings = load_settings()
    ingest_landing(
        settings.db_path, "canonical", shop_home / "landing", max_bad_share=0.5, end=DAY1
    )
    snapshot = take_snapshot(settings, run_as_of(DAY1), shop_home / "work" / "t")
    choose_model(settings, snapshot, retrain=True)
    (constant,) = [
        r for r in registry.list_models(settings.models_dir) if r.version.startswith("constant-")
    ]
    registry.promote(settings.models_dir, constant.version)  # it replaces the ranker
    with pytest.raises(HealthCheckFailed) as failed:
        _run(shop_home, DAY1, landing=False, retrain=False)
    health = failed.value.health
    assert [line.split(" ")[0] for line in health["failed"]] == ["score_ties"]
    assert health["checks"]["score_ties"]["measure"] == 1.0
    assert _stored(shop_home, DAY1)["score_ties"]["model_version"] == constant.version


def test_thirty_normal_days_raise_nothing(
    base_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checks run day by day on the plain task functions (the flow's steps without
    Prefect's per-run overhead: a 30-run flow backfill is minutes here); the stored rows of
    the 30 nights hold no warning and no failure."""
    from tasks.features.snapshot import take_snapshot
    from tasks.monitor.health import model_checks, read_history, run_health
    from tasks.publish.writer import publish
    from tasks.rank.task import choose_model, score_users
    from tasks.settings import load_settings
    from tasks.timeutil import run_as_of

    home = tmp_path / "home"
    shutil.copytree(base_home, home)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**ENV, "NIGHTREC_HOME": str(home)}.items():
            mp.setenv(name, value)
        settings = load_settings()
        ingest_landing(settings.db_path, "canonical", home / "landing", max_bad_share=0.5)
        days = [DAY1 + dt.timedelta(days=i) for i in range(30)]
        for day in days:
            work = home / "work" / str(day)
            snapshot = take_snapshot(settings, run_as_of(day), work)
            early = model_checks(settings, snapshot, day)
            choice = choose_model(settings, snapshot)
            scored = score_users(settings, snapshot, choice, work, work / "report.json")
            run_health(settings, snapshot, day, f"r{day}", choice, scored, early)
            recs = pl.read_parquet(scored.recs_path)
            publish(recs, settings.recommendations_dir, day, f"r{day}", scored.model_version, 5, {})
    rows = read_history(home / "nightrec.duckdb", DAY1, days[-1] + dt.timedelta(days=1))
    assert rows.get_column("run_date").n_unique() == 30
    alarms = rows.filter(pl.col("status").is_in(["warn", "fail"]))
    assert alarms.height == 0, alarms.select("run_date", "check_name", "measure", "detail")
    measured = rows.filter(pl.col("status") == "ok").get_column("check_name").unique().to_list()
    # every check ran on most nights (rolling_ndcg from the 8th, relative ones from the 2nd)
    assert set(measured) >= {"volume", "input_drift", "feature_drift", "rolling_ndcg", "overlap"}
    retrained = rows.filter(pl.col("check_name") == "model_age").get_column("measure")
    assert retrained.max() == 1.0  # the night a retrain was due, never older: it retrained

    # `nightrec monitor` prints one row per run date (DAY0's flow run and the 30 nights).
    from flows.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["nightrec", "monitor", "--days", "40", "--home", str(home)])
        with pytest.raises(SystemExit) as exit_:
            main()
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    shown = [d for d in [DAY0, *days] if f"│ {d} │ ok " in printed]
    assert shown == [DAY0, *days]
