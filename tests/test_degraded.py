"""Nothing degrades silently: each way a run can serve something other than its model, or
nothing at all, is forced here and must show in the manifest, the report and the outcome."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from tasks.errors import DegradedRun
from tasks.ops.inputs import EmptyCatalog, NoInput, StaleInput
from tasks.publish.writer import partition_dir, read_manifest
from tasks.store import connect
from tasks.synth.tiny import TINY_PROTOCOL_ENV, TINY_SHOP, stage_tiny_shop

pytestmark = pytest.mark.flow
RUN_DATE = TINY_SHOP.start + dt.timedelta(days=TINY_SHOP.days - 2)
K = int(TINY_PROTOCOL_ENV["NIGHTREC_K"])


@pytest.fixture
def shop(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {"NIGHTREC_HOME": str(home), **TINY_PROTOCOL_ENV}.items():
        monkeypatch.setenv(name, value)
    landing = home / "landing"
    stage_tiny_shop(home, landing, RUN_DATE)
    return landing


def _params(**kw):
    from flows.nightly import NightlyParams

    return NightlyParams(run_date=RUN_DATE, **kw)


def _out_of_memory(*args, **kwargs):
    raise MemoryError("Unable to allocate 29.0 GiB for an array with shape (62000, 62000)")


def _published(home: Path, day: dt.date = RUN_DATE) -> pl.DataFrame:
    return pl.read_parquet(partition_dir(home / "recommendations", day) / "*.parquet")


def test_a_candidate_source_failing_in_training_is_a_degraded_run(
    prefect_harness: None, shop: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import nightly_flow

    monkeypatch.setattr("tasks.candidates.generate.ease_candidates", _out_of_memory)
    with pytest.raises(DegradedRun, match="ranker training failed \\(MemoryError") as raised:
        nightly_flow(_params())
    manifest = raised.value.result
    assert manifest == read_manifest(home / "recommendations", RUN_DATE)  # published anyway
    assert manifest["status"] == "degraded"
    assert manifest["model_version"] == "baseline-repurchase"
    assert manifest["model_fallback"].startswith("ranker training failed (MemoryError")
    assert manifest["model_fallback"].endswith("scored with baseline-repurchase")
    report = (home / "reports" / "nightly" / f"run_date={RUN_DATE}.md").read_text()
    assert "## DEGRADED" in report and "MemoryError" in report
    # Every known customer still has K items, labelled as the baseline's.
    recs = _published(home)
    assert recs.height == manifest["users"] * K
    assert set(recs.get_column("source")) <= {"baseline-repurchase", "popularity_fallback"}
    # Explained as what they are: the customer's own items, or the popular list padding them.
    expected = {
        "baseline-repurchase": (
            "repurchase",
            "you bought it before (the repurchase baseline served: no model tonight)",
        ),
        "popularity_fallback": (
            "fallback",
            "one of the most bought items lately: no model could serve tonight",
        ),
    }
    explained = set(recs.select("source", "reason", "reason_detail").unique().iter_rows())
    assert explained == {(source, *expected[source]) for source in recs["source"].unique()}
    assert recs.get_column("reason_features").null_count() == recs.height
    assert manifest["rows_by_reason"] == dict(sorted(recs.group_by("reason").len().iter_rows()))


def test_allow_degraded_publishes_the_fallback_and_returns(
    prefect_harness: None, shop: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import nightly_flow

    monkeypatch.setattr("tasks.candidates.generate.ease_candidates", _out_of_memory)
    manifest = nightly_flow(_params(allow_degraded=True))
    assert manifest["status"] == "degraded"
    assert manifest["degraded"] == [f"fallback: {manifest['model_fallback']}"]


def test_a_model_failing_at_scoring_falls_back_and_says_why(
    prefect_harness: None, shop: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import nightly_flow

    # The rule the README states: a customer with a single item in their history is ranked by
    # the model like everyone else (their candidates include popular and co-bought items);
    # `popularity_fallback` only pads lists shorter than K. One such customer joins the shop:
    with connect(home / "nightrec.duckdb") as con:
        (item,) = con.execute("select min(item_id) from events").fetchone()
        bought = dt.datetime.combine(RUN_DATE - dt.timedelta(days=3), dt.time(12))
        con.execute(
            "insert into events values ('solo', ?, 'purchase', ?, 1, 2.5, 'o-solo', null, "
            "'canonical', ?, 'test')",
            [item, bought, bought.date()],
        )
    first = nightly_flow(_params())
    assert first["status"] == "ok" and first["degraded"] == [] and first["model_fallback"] is None
    solo = _published(home).filter(pl.col("user_id") == "solo")
    assert solo.height == K and set(solo.get_column("source")) == {"model"}
    assert item not in solo.get_column("item_id").to_list() or solo.height == K

    # A source that runs in each shard (co-purchase) fails: the model failed.
    from tasks.candidates import generate

    copurchase = generate.copurchase_candidates
    monkeypatch.setattr(generate, "copurchase_candidates", _out_of_memory)
    with pytest.raises(DegradedRun) as raised:
        nightly_flow(_params(retrain=False))
    manifest = raised.value.result
    assert manifest["model_fallback"] == (
        f"{first['model_version']} failed (MemoryError: Unable to allocate 29.0 GiB for an "
        "array with shape (62000, 62000)): scored with baseline-repurchase"
    )
    monkeypatch.setattr(generate, "copurchase_candidates", copurchase)
    # EASE's candidates are scored once for every customer, before any shard: no model can
    # score without them, so the aggregates failed.
    monkeypatch.setattr(generate, "ease_candidates", _out_of_memory)
    with pytest.raises(DegradedRun) as raised:
        nightly_flow(_params(retrain=False))
    assert raised.value.result["model_fallback"] == (
        "candidate aggregates failed (MemoryError: Unable to allocate 29.0 GiB for an "
        "array with shape (62000, 62000)): scored with baseline-repurchase"
    )


def test_an_empty_catalog_stops_the_run_before_scoring(
    prefect_harness: None, shop: Path, home: Path
) -> None:
    from flows.nightly import nightly_flow

    with connect(home / "nightrec.duckdb") as con:
        con.execute("delete from catalog")
    with pytest.raises(EmptyCatalog, match="catalog in the run's snapshot is empty"):
        nightly_flow(_params())
    assert read_manifest(home / "recommendations", RUN_DATE) is None


def test_a_run_without_events_publishes_nothing(prefect_harness: None, home: Path) -> None:
    from flows.nightly import nightly_flow

    with connect(home / "nightrec.duckdb") as con:  # a store, but nothing ingested
        con.execute("select 1")
    with pytest.raises(NoInput, match="no events before"):
        nightly_flow(_params(home=str(home)))
    assert not (home / "recommendations").exists() or not any((home / "recommendations").iterdir())


def test_a_stale_input_fails_unless_allowed(
    prefect_harness: None, shop: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import NightlyParams, nightly_flow

    nightly_flow(_params())  # a model to serve the late day with
    late = RUN_DATE + dt.timedelta(days=30)
    with pytest.raises(StaleInput, match=f"newest event is {RUN_DATE}") as raised:
        nightly_flow(NightlyParams(run_date=late, retrain=False))
    assert "30 days before the run date" in str(raised.value)
    monkeypatch.setenv("NIGHTREC_SAFETY__ALLOW_STALE_INPUT", "true")
    manifest = nightly_flow(NightlyParams(run_date=late, retrain=False))
    assert manifest["status"] == "ok"
    assert manifest["notes"][0].startswith(f"input is stale: the newest event is {RUN_DATE}")


def test_a_source_in_its_bounded_form_is_noted_not_degraded(
    prefect_harness: None, shop: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EASE over a catalog larger than its budget works on the most-bought items: the run is
    the model's (exit 0) and its manifest and report say what was bounded."""
    from flows.nightly import nightly_flow

    monkeypatch.setenv("NIGHTREC_CANDIDATES__EASE_MAX_ITEMS", "5")
    manifest = nightly_flow(_params())
    assert manifest["status"] == "ok" and manifest["degraded"] == []
    (note,) = manifest["notes"]
    assert note.startswith("candidates: EASE on the 5 most-bought of ")
    report = (home / "reports" / "nightly" / f"run_date={RUN_DATE}.md").read_text()
    assert note in report
