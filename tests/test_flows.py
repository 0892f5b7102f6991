"""The nightly and backfill flows under real Prefect (ephemeral) on a tiny synthetic shop."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.constants import MANIFEST_NAME, REASONS
from tasks.explain.published import NoPartition, UnknownCustomer
from tasks.ingest.load import ingest_catalog, ingest_landing
from tasks.ingest.stale import flag_stale, published_dates, stale_dates
from tasks.publish.writer import is_complete, partition_dir
from tasks.store import connect
from tasks.synth.shop import SynthShopConfig, generate_shop, write_landing
from tasks.timeutil import start_of

pytestmark = pytest.mark.flow
# After an intended ranking change: NIGHTREC_REGENERATE_GOLDEN=1 pytest tests/test_flows.py
GOLDEN = Path(__file__).parent / "golden" / "nightly_topk.csv"
EXPLAIN_GOLDEN = Path(__file__).parent / "golden" / "explain_customer.txt"
SHOP = SynthShopConfig(n_customers=40, n_items=30, n_categories=4, days=45, seed=3)
RUN_DATE = SHOP.start + dt.timedelta(days=SHOP.days - 2)
K = 5


@pytest.fixture
def tiny_shop(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 45-day shop, ingested up to the day before the run, with a short protocol."""
    for name, value in {
        "NIGHTREC_HOME": str(home),
        "NIGHTREC_K": str(K),
        "NIGHTREC_HORIZON_DAYS": "7",
        "NIGHTREC_RANKER__N_WINDOWS": "3",
        "NIGHTREC_RANKER__WINDOW_STEP_DAYS": "7",
        "NIGHTREC_RANKER__MIN_DATA_IN_LEAF": "5",
        "NIGHTREC_RANKER__NUM_THREADS": "1",
        "NIGHTREC_RANKER__KIND": "lightgbm",  # the goldens and asserts are LightGBM's
    }.items():
        monkeypatch.setenv(name, value)
    landing = home / "landing"
    report = write_landing(generate_shop(SHOP), landing)
    ingest_catalog(home / "nightrec.duckdb", report.catalog_path)
    ingest_landing(
        home / "nightrec.duckdb",
        "canonical",
        landing,
        max_bad_share=0.5,
        end=RUN_DATE - dt.timedelta(days=1),
    )
    return landing


def _read(home: Path, day: dt.date) -> tuple[pl.DataFrame, dict]:
    folder = partition_dir(home / "recommendations", day)
    return (
        pl.read_parquet(folder / "*.parquet"),
        json.loads((folder / MANIFEST_NAME).read_text()),
    )


def test_nightly_flow_publishes_top_k_for_every_known_user(
    prefect_harness: None, tiny_shop: Path, home: Path
) -> None:
    from flows.nightly import NightlyParams, nightly_flow

    params = NightlyParams(run_date=RUN_DATE, landing_dir=str(tiny_shop), source="canonical")
    manifest = nightly_flow(params)
    recs, on_disk = _read(home, RUN_DATE)

    assert on_disk == manifest
    assert manifest["k"] == K and manifest["retrained"] is True
    assert manifest["model_version"].startswith("lgbm-")
    assert manifest["ingested"][0]["day"] == RUN_DATE.isoformat()
    assert manifest["ingested"][0]["status"] == "loaded"
    assert manifest["input_watermark"] < f"{RUN_DATE + dt.timedelta(days=1)}"
    assert recs.height == manifest["rows"] == manifest["users"] * K
    per_user = recs.group_by("user_id").agg(
        pl.col("item_id").n_unique().alias("items"), pl.col("rank").sort().alias("ranks")
    )
    assert per_user.get_column("items").unique().to_list() == [K]
    assert per_user.get_column("ranks").to_list()[0] == list(range(1, K + 1))
    if os.environ.get("NIGHTREC_REGENERATE_GOLDEN") == "1":
        recs.select("user_id", "item_id", "rank", "source").write_csv(GOLDEN)
    golden = pl.read_csv(GOLDEN, schema_overrides={"rank": pl.Int32})
    assert_frame_equal(recs.select(golden.columns), golden)
    _check_explanations(recs, manifest, home)

    # A rerun replaces the day with the same content, reusing the day's model.
    again = nightly_flow(params)
    rerun, _ = _read(home, RUN_DATE)
    assert again["retrained"] is False and again["model_version"] == manifest["model_version"]
    assert_frame_equal(rerun.drop("run_id"), recs.drop("run_id"))
    assert is_complete(home / "recommendations", RUN_DATE)


def _explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "explain", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )


def _check_explanations(recs: pl.DataFrame, manifest: dict, home: Path) -> None:
    """Every published row has a known reason and a detail; the model's rows carry their top
    contributions; the manifest and the report count the reasons; `nightrec explain` prints
    a customer's list as the golden file says."""
    assert recs.get_column("reason").null_count() == 0
    assert recs.get_column("reason_detail").null_count() == 0
    assert set(recs.get_column("reason")) <= set(REASONS)
    model_rows = recs.filter(pl.col("source") == "model")
    assert model_rows.height > 0 and model_rows.get_column("reason_features").null_count() == 0
    assert model_rows.get_column("reason_features").str.count_matches(";").unique().to_list() == [2]
    counts = dict(recs.group_by("reason").len().iter_rows())
    assert manifest["rows_by_reason"] == dict(sorted(counts.items()))
    report = (home / "reports" / "nightly" / f"run_date={RUN_DATE}.md").read_text()
    for reason, rows in counts.items():
        assert f"| {reason} | {rows:,} | {rows / recs.height:.1%} |" in report

    customer = recs.get_column("user_id").sort()[0]
    shown = _explain("--customer", customer, "--date", str(RUN_DATE), "--home", str(home))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.replace(manifest["model_version"], "MODEL")
    if os.environ.get("NIGHTREC_REGENERATE_GOLDEN") == "1":
        EXPLAIN_GOLDEN.write_text(text)
    assert text == EXPLAIN_GOLDEN.read_text()
    newest = _explain("--customer", customer, "--home", str(home))
    assert newest.stdout == shown.stdout  # the newest partition by default

    unknown = _explain("--customer", "nobody", "--home", str(home))
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        f"error: customer 'nobody' has no list in run_date={RUN_DATE} "
        f"({manifest['users']:,} customers there)",
        f"hint: {UnknownCustomer.hint}",
    ]
    missing = _explain("--customer", customer, "--date", "2001-01-01", "--home", str(home))
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"error: no published partition run_date=2001-01-01 under {home / 'recommendations'} "
        f"(published dates: {RUN_DATE})",
        f"hint: {NoPartition.hint}",
    ]


def test_backfill_runs_days_in_order_and_skips_complete_days(
    prefect_harness: None, tiny_shop: Path, home: Path
) -> None:
    from flows.backfill import BackfillParams, backfill_flow

    params = BackfillParams(
        start=RUN_DATE,
        end=RUN_DATE + dt.timedelta(days=1),
        landing_dir=str(tiny_shop),
        source="canonical",
    )
    first = backfill_flow(params)
    assert [r["state"] for r in first] == ["completed", "completed"]
    assert [r["retrained"] for r in first] == [True, False]
    second = backfill_flow(params)
    assert [r["state"] for r in second] == ["skipped (complete)"] * 2
    forced = backfill_flow(params.model_copy(update={"force": True}))
    assert [r["state"] for r in forced] == ["completed", "completed"]

    # A late file for RUN_DATE flags both published days; backfill reruns them, clears flags.
    with connect(home / "nightrec.duckdb") as con:
        flagged = flag_stale(
            con, published_dates(home / "recommendations"), "canonical", RUN_DATE, "late"
        )
    assert flagged == [RUN_DATE, RUN_DATE + dt.timedelta(days=1)]
    stale = backfill_flow(params)
    assert [r["state"] for r in stale] == ["completed", "completed"]
    assert stale_dates(home / "nightrec.duckdb") == []


def test_evaluate_flow_compares_the_ranker_with_every_baseline(
    prefect_harness: None, tiny_shop: Path, home: Path
) -> None:
    from flows.evaluate import EvaluateParams, evaluate_flow

    as_of = RUN_DATE - dt.timedelta(days=7)
    result = evaluate_flow(EvaluateParams(as_of=as_of, horizon_days=7, home=str(home)))

    metrics = result["metrics"]
    models = {"lightgbm", "neural", "blend"}
    assert set(metrics) == models | {"popularity", "repurchase", "item-kNN", "EASE"}
    assert {m["users"] for m in metrics.values()} == {result["users"]}
    assert result["users"] > 0
    baselines = {name: m["ndcg@10"] for name, m in metrics.items() if name not in models}
    assert result["best_baseline"] == max(baselines, key=baselines.__getitem__)
    diff = result["ndcg@10_difference"]
    assert diff["mean_diff"] == pytest.approx(
        metrics["lightgbm"]["ndcg@10"] - baselines[result["best_baseline"]]
    )
    assert diff["low"] <= diff["mean_diff"] <= diff["high"]
    for kind in ("neural", "blend"):
        to_lgbm = result["ndcg@10_difference_to_lightgbm"][kind]
        assert to_lgbm["mean_diff"] == pytest.approx(
            metrics[kind]["ndcg@10"] - metrics["lightgbm"]["ndcg@10"]
        )
    weight = result["kinds"]["blend"]["blend_weight_lightgbm"]
    assert 0.0 <= weight <= 1.0
    report = Path(result["report"]).read_text()
    assert f"# Backtest at as-of {as_of}" in report and "| EASE |" in report
    assert (
        "| blend |" in report
        and f"Blend weight on LightGBM's per-customer z-score: {weight}" in report
    )

    for png in ("metrics_at_k.png", "ndcg10_difference.png", "ndcg10_by_history.png"):
        assert f"]({png})" in report
        assert (Path(result["report"]).parent / png).read_bytes()[:4] == b"\x89PNG"
    for name, bounds in result["intervals"].items():
        assert bounds["ndcg@10"][0] <= metrics[name]["ndcg@10"] <= bounds["ndcg@10"][1]
    by_history = result["ndcg@10_by_history"]
    assert sum(s["users"] for s in by_history) == result["users"]


def test_evaluate_with_landing_files_uses_the_protocols_user_set(
    prefect_harness: None, tiny_shop: Path, home: Path, tmp_path: Path
) -> None:
    """With the landing files, the users are every customer with an order line before T and
    in the window (tasks/protocol/split.py); files that miss a store customer are refused."""
    import shutil

    from flows.evaluate import EvaluateParams, evaluate_flow
    from tasks.ingest.activity import ActivityMismatch, order_lines
    from tasks.protocol.split import protocol_users

    as_of = RUN_DATE - dt.timedelta(days=7)
    params = EvaluateParams(
        as_of=as_of,
        horizon_days=7,
        home=str(home),
        kinds=["lightgbm"],
        landing_dir=str(tiny_shop),
        source="canonical",
    )
    result = evaluate_flow(params)
    expected = protocol_users(order_lines("canonical", tiny_shop), start_of(as_of), 7)
    assert result["user_set"] == "order lines"
    assert result["users"] == expected.len() > 0
    assert set(result["metrics"]) == {"lightgbm", "popularity", "repurchase", "item-kNN", "EASE"}

    # The first week's files alone: customers who came later have no order line there.
    partial = tmp_path / "partial"
    partial.mkdir()
    for day_file in sorted((tiny_shop / "events").iterdir())[:7]:
        shutil.copy(day_file, partial / day_file.name)
    with pytest.raises(ActivityMismatch, match="with purchases in the store have no order line"):
        evaluate_flow(params.model_copy(update={"landing_dir": str(partial)}))


def test_auto_kind_skips_the_network_over_its_budget_and_the_run_says_why(
    prefect_harness: None, tiny_shop: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import NightlyParams, nightly_flow

    monkeypatch.setenv("NIGHTREC_RANKER__KIND", "auto")
    monkeypatch.setenv("NIGHTREC_NEURAL__AUTO_BUDGET_S", "0.000001")
    monkeypatch.setenv("NIGHTREC_NEURAL__NUM_THREADS", "1")
    params = NightlyParams(run_date=RUN_DATE, landing_dir=str(tiny_shop), source="canonical")
    manifest = nightly_flow(params)
    assert manifest["status"] == "ok" and manifest["model_kind"] == "lightgbm"
    selection = manifest["kind_selection"]
    assert selection["mode"] == "auto" and selection["winner"] == "lightgbm"
    assert list(selection["validation_ndcg"]) == ["lightgbm"]
    assert selection["network"]["status"] == "skipped"
    why = selection["network"]["why"]
    assert why.startswith("network skipped: estimated ") and "over the budget 0 s" in why
    meta = json.loads((home / "models" / manifest["model_version"] / "meta.json").read_text())
    assert meta["kind_selection"] == selection  # the registry keeps it for later nights
    report = (home / "reports" / "nightly" / f"run_date={RUN_DATE}.md").read_text()
    assert "## Model kind: lightgbm (auto; tonight's retrain)" in report
    assert f"{why}." in report


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="forces a failure with device=cuda"
)
def test_auto_kind_serves_lightgbm_when_the_network_fails_and_the_run_is_degraded(
    prefect_harness: None, tiny_shop: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import NightlyParams, nightly_flow
    from tasks.errors import DegradedRun

    monkeypatch.setenv("NIGHTREC_RANKER__KIND", "auto")
    monkeypatch.setenv("NIGHTREC_NEURAL__DEVICE", "cuda")  # none here: the network fails
    params = NightlyParams(run_date=RUN_DATE, landing_dir=str(tiny_shop), source="canonical")
    with pytest.raises(DegradedRun) as caught:
        nightly_flow(params)
    _, manifest = _read(home, RUN_DATE)
    assert caught.value.result == manifest
    assert manifest["status"] == "degraded" and manifest["model_kind"] == "lightgbm"
    network = manifest["kind_selection"]["network"]
    assert network["status"] == "failed"
    assert network["why"].startswith("network failed (DeviceError: neural.device is 'cuda'")
    assert manifest["degraded"] == [f"auto model kind: {network['why']}; trained lightgbm alone"]


def test_nightly_flow_trains_and_serves_the_blend_when_set(
    prefect_harness: None, tiny_shop: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import NightlyParams, nightly_flow

    monkeypatch.setenv("NIGHTREC_RANKER__KIND", "blend")
    monkeypatch.setenv("NIGHTREC_NEURAL__MAX_EPOCHS", "2")
    monkeypatch.setenv("NIGHTREC_NEURAL__NUM_THREADS", "1")
    params = NightlyParams(run_date=RUN_DATE, landing_dir=str(tiny_shop), source="canonical")
    manifest = nightly_flow(params)
    recs, _ = _read(home, RUN_DATE)
    if manifest["model_version"] is None or not manifest["model_version"].startswith("blend-"):
        # The gate may refuse a first model that does not beat the baselines; say which.
        pytest.fail(f"blend not served: {manifest['model_choice']}")
    assert manifest["model_kind"] == "blend" and manifest["retrained"] is True
    model_dir = home / "models" / manifest["model_version"]
    assert {p.name for p in model_dir.iterdir()} >= {"model.txt", "network.pt", "booster.txt"}
    assert recs.height == manifest["users"] * K
    assert (recs.get_column("model_version") == manifest["model_version"]).all()
    # Blend rows are explained by the blend's LightGBM part.
    model_rows = recs.filter(pl.col("source") == "model")
    assert model_rows.height > 0 and model_rows.get_column("reason_features").null_count() == 0
    assert set(recs.get_column("reason")) <= set(REASONS)
    # Its shards are sized for a network's tensors; a LightGBM model's for its features alone.
    from tasks.rank.task import scoring_row_bytes
    from tasks.settings import load_settings
    from tasks.shards import CANDIDATE_ROW_BYTES, NETWORK_ROW_BYTES

    settings = load_settings(home=home)
    assert scoring_row_bytes(settings, [manifest["model_version"]]) == NETWORK_ROW_BYTES
    assert scoring_row_bytes(settings, ["no-such-model"]) == CANDIDATE_ROW_BYTES
