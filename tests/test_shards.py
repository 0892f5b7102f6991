"""Scoring in shards of customers: the cut changes how the work is done, never the lists.

The nightly flow runs under real Prefect on the tiny shop: one shard, many shards in the
run's process, and many shards on a 2-worker Dask `LocalCluster` (one of whose workers is
killed mid-shard). Every variant must publish exactly the same rows.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.constants import USER_ID
from tasks.ingest.load import ingest_catalog, ingest_landing
from tasks.protocol.split import evaluated_users
from tasks.publish.writer import partition_dir
from tasks.rank.dataset import candidate_frame, known_buyers, shared_aggregates
from tasks.rank.train import (
    train_ranker,
    training_events,
    training_sample_fraction,
    training_windows,
)
from tasks.settings import CandidateSettings, Settings
from tasks.shards import (
    CANDIDATE_ROW_BYTES,
    NETWORK_ROW_BYTES,
    in_sample,
    sample_fraction,
    sampled,
    shard_count,
    shard_of,
    shard_users,
)
from tasks.synth.shop import SynthShopConfig, generate_shop, write_landing
from tasks.timeutil import known_users, run_as_of

SHOP = SynthShopConfig(n_customers=40, n_items=30, n_categories=4, days=45, seed=3)
RUN_DATE = SHOP.start + dt.timedelta(days=SHOP.days - 2)
K = 5


def test_shard_count_follows_the_budget() -> None:
    per_user = 150 * CANDIDATE_ROW_BYTES  # 180,000 bytes: 5 customers fit 1 MiB
    assert 2**20 // per_user == 5
    assert shard_count(40, 150, 1) == 8
    assert shard_count(41, 150, 1) == 9
    assert shard_count(40, 150, 1024) == 1
    assert shard_count(0, 150, 1) == 1
    # A network scoring the shard takes more per row: more, smaller shards for one budget.
    assert shard_count(40, 150, 1, NETWORK_ROW_BYTES) == 20  # 2 customers of 2,800 B x 150


def test_shards_cut_customers_into_disjoint_sorted_parts() -> None:
    users = pl.Series([f"c{i}" for i in range(500)])
    parts = shard_users(users, 7)
    assert len(parts) == 7
    assert sum(p.len() for p in parts) == 500
    assert sorted(pl.concat(parts).to_list()) == sorted(users.to_list())
    assert all(p.is_sorted() for p in parts)
    assert min(p.len() for p in parts) > 0  # 500 ids spread over every shard
    # A customer's shard depends on their id alone, not on who else is scored.
    alone = pl.DataFrame({USER_ID: ["c42"]}).select(shard_of(7)).item()
    assert "c42" in parts[alone].to_list()


def test_a_shard_with_shared_aggregates_gets_exactly_its_rows_of_the_whole() -> None:
    shop = generate_shop(SHOP)
    events = shop.events
    as_of = run_as_of(RUN_DATE)
    cfg = CandidateSettings()
    users = known_users(events, as_of)
    whole = candidate_frame(events, shop.catalog, users, as_of, cfg)
    shared = shared_aggregates(events, shop.catalog, as_of, cfg)
    parts = []
    for shard in shard_users(users, 3):
        own = events.filter(pl.col(USER_ID).is_in(shard.implode()))
        parts.append(candidate_frame(own, shop.catalog, shard, as_of, cfg, shared=shared))
    assert whole.height > 0 and all(p.height > 0 for p in parts)
    # The version-2 features are in the rows compared, item-level ones from the shared
    # aggregates (every customer's repeat orders), and they are not all empty here.
    for column in ("i_repurchase_gap", "ui_median_gap", "i_trend_90d", "u_trend"):
        assert whole.get_column(column).drop_nulls().len() > 0, column
    assert whole.get_column("ui_views").sum() > 0 and whole.get_column("ui_carts").sum() > 0
    assert whole.get_column("ui_category_share").max() > 0
    keys = [USER_ID, "item_id"]
    assert_frame_equal(  # to the last bits: see _assert_same_lists
        pl.concat(parts).sort(keys), whole.sort(keys), check_exact=False, rtol=1e-14, atol=0.0
    )


def test_ease_lists_written_in_parts_are_each_customers_own_ease_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard reads EASE's candidates from lists scored once for every customer, a part at
    a time: any set of customers gets exactly what scoring them under the fit gives."""
    import dataclasses

    from tasks.candidates import generate
    from tasks.rank.sharded import EASE_FOLDER, write_shared

    shop = generate_shop(SHOP)
    events, as_of, cfg = shop.events, run_as_of(RUN_DATE), CandidateSettings()
    users = known_users(events, as_of)
    shared = shared_aggregates(events, shop.catalog, as_of, cfg)
    fit = shared.candidates.ease
    assert fit is not None
    monkeypatch.setattr(generate, "EASE_LIST_USERS", 7)
    folder = tmp_path / "shared"
    lists = generate.write_ease_lists(fit, events, users, as_of, cfg, folder / EASE_FOLDER)
    assert len(list((folder / EASE_FOLDER).glob("part-*.parquet"))) == -(-users.len() // 7)
    keys = [USER_ID, "item_id"]
    for some in (users, users.gather([0, 3, 17, 30]), users.head(0)):
        want = generate.ease_candidates(events, some, as_of, cfg, fit)
        got = generate.ease_candidates(events, some, as_of, cfg, lists)
        assert_frame_equal(got.sort(keys), want.sort(keys), check_exact=True)
    assert lists.for_users(users).height > users.len()  # many candidates each

    with_lists = dataclasses.replace(
        shared, candidates=dataclasses.replace(shared.candidates, ease=lists)
    )
    whole = candidate_frame(events, shop.catalog, users, as_of, cfg, shared=shared)
    shard = shard_users(users, 3)[1]
    own = events.filter(pl.col(USER_ID).is_in(shard.implode()))
    part = candidate_frame(own, shop.catalog, shard, as_of, cfg, shared=with_lists)
    assert_frame_equal(
        part.sort(keys),
        whole.filter(pl.col(USER_ID).is_in(shard.implode())).sort(keys),
        check_exact=False,
        rtol=1e-14,
        atol=0.0,
    )
    empty = pl.Series(dtype=pl.Utf8)
    with pytest.raises(TypeError, match="never its N x N weights"):
        write_shared(shared, empty, empty, folder)
    write_shared(with_lists, empty, empty, folder)


ENV = {
    "NIGHTREC_K": str(K),
    "NIGHTREC_HORIZON_DAYS": "7",
    "NIGHTREC_RANKER__N_WINDOWS": "3",
    "NIGHTREC_RANKER__WINDOW_STEP_DAYS": "7",
    "NIGHTREC_RANKER__MIN_DATA_IN_LEAF": "5",
    "NIGHTREC_RANKER__NUM_THREADS": "1",
}


def _shop_home(home: Path) -> Path:
    """The tiny shop, ingested up to the day before the run."""
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
    return home


def _published(home: Path) -> pl.DataFrame:
    frame = pl.read_parquet(partition_dir(home / "recommendations", RUN_DATE) / "*.parquet")
    return frame.drop("run_id").sort(USER_ID, "rank")


def _assert_same_lists(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """The same items at the same ranks for the same customers, from the same model, with the
    same scores (to the last bits: Polars' float division is not bit-stable across frame
    layouts, so a feature may differ by one ulp in a shard)."""
    keys = [c for c in want.columns if c != "score"]
    assert_frame_equal(got.select(keys), want.select(keys), check_exact=True)
    assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=0.0)


def _shards(rows: pl.DataFrame) -> int:
    """Shards of 5 customers (1 MiB at 150 candidates of CANDIDATE_ROW_BYTES each)."""
    return shard_count(rows.get_column(USER_ID).n_unique(), 150, 1)


@pytest.fixture(scope="module")
def one_shard(
    prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pl.DataFrame]:
    """The tiny shop's retraining run in one shard: (its models folder, its rows)."""
    from flows.nightly import NightlyParams, nightly_flow

    home = _shop_home(tmp_path_factory.mktemp("one-shard"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**ENV, "NIGHTREC_HOME": str(home)}.items():
            patch.setenv(name, value)
        manifest = nightly_flow(NightlyParams(run_date=RUN_DATE, retrain=True))
    assert manifest["status"] == "ok" and manifest["shards"] == 1
    return home / "models", _published(home)


def _sharded_run(
    home: Path, models: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> dict[str, object]:
    """The same day again in a fresh home with the same model, 5 customers per shard."""
    from flows.nightly import NightlyParams, nightly_flow

    _shop_home(home)
    shutil.copytree(models, home / "models", dirs_exist_ok=True)
    for name, value in {
        **ENV,
        "NIGHTREC_HOME": str(home),
        "NIGHTREC_SCALE__SHARD_MEMORY_MIB": "1",
        **env,
    }.items():
        monkeypatch.setenv(name, value)
    return nightly_flow(NightlyParams(run_date=RUN_DATE, retrain=False))


@pytest.mark.flow
def test_many_shards_in_process_publish_the_same_rows_as_one(
    one_shard: tuple[Path, pl.DataFrame], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models, rows = one_shard
    manifest = _sharded_run(home, models, monkeypatch)
    assert manifest["shards"] == _shards(rows) and manifest["status"] == "ok"
    assert manifest["rows"] == rows.height
    _assert_same_lists(_published(home), rows)


@pytest.mark.flow
def test_a_two_worker_dask_cluster_publishes_the_same_rows(
    one_shard: tuple[Path, pl.DataFrame],
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    models, rows = one_shard
    manifest = _sharded_run(home, models, monkeypatch, NIGHTREC_DASK__WORKERS="2")
    assert manifest["shards"] == _shards(rows) and manifest["status"] == "ok"
    _assert_same_lists(_published(home), rows)
    assert "shard tasks run on Dask: a local cluster of 2 worker process(es)" in caplog.text


@pytest.mark.flow
def test_a_worker_killed_mid_shard_is_retried_and_the_rows_are_the_same(
    one_shard: tuple[Path, pl.DataFrame],
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    models, rows = one_shard
    # One worker is SIGKILLed inside its first shard: Dask runs that shard again elsewhere.
    manifest = _sharded_run(
        home,
        models,
        monkeypatch,
        NIGHTREC_DASK__WORKERS="2",
        NIGHTREC_SAFETY__FAULT="shard_worker_once",
    )
    assert manifest["status"] == "ok" and manifest["shards"] == _shards(rows)
    _assert_same_lists(_published(home), rows)
    assert "killed by signal 9" in caplog.text


@pytest.mark.flow
def test_a_shard_whose_worker_keeps_dying_fails_the_run_naming_it(
    one_shard: tuple[Path, pl.DataFrame], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.rank.shard_runners import ShardFailed

    models, rows = one_shard
    died = rf"shard \d+/{_shards(rows)} failed: its worker died 1 time\(s\)"
    with pytest.raises(ShardFailed, match=died):
        _sharded_run(
            home,
            models,
            monkeypatch,
            NIGHTREC_DASK__WORKERS="2",
            NIGHTREC_DASK__SHARD_RETRIES="0",
            NIGHTREC_SAFETY__FAULT="mid_scoring",
        )
    assert not partition_dir(home / "recommendations", RUN_DATE).exists()


def test_the_training_sample_is_one_hash_sample_of_customers() -> None:
    assert sample_fraction(1000, 2000) == 1.0
    assert sample_fraction(4000, 1000) == 0.25
    users = pl.Series([f"c{i}" for i in range(20_000)])
    quarter = sampled(users, 0.25)
    assert 4_700 < quarter.len() < 5_300  # a hash sample: about a quarter
    assert sampled(users, 0.25).equals(quarter)  # the same draw every time
    # A customer is in or out whatever set they are drawn from: a window's evaluated
    # customers sampled are a subset of its known buyers sampled.
    some = users.gather(list(range(0, 20_000, 3)))
    assert set(sampled(some, 0.25).to_list()) <= set(quarter.to_list())
    assert sampled(users, 1.0).equals(users)


def _tiny_settings(**scale: int) -> Settings:
    return Settings(
        k=K,
        horizon_days=7,
        ranker={"n_windows": 3, "window_step_days": 7, "min_data_in_leaf": 5, "num_threads": 1},
        scale=scale,
    )


def test_training_windows_built_in_shards_are_the_same_rows() -> None:
    shop = generate_shop(SHOP)
    as_of = run_as_of(RUN_DATE)
    whole = training_windows(shop.events, shop.catalog, as_of, _tiny_settings())
    cut = training_windows(shop.events, shop.catalog, as_of, _tiny_settings(shard_memory_mib=1))
    assert whole.used == cut.used and whole.sample_fraction == cut.sample_fraction == 1.0
    for a, b in zip(whole.frames, cut.frames, strict=True):
        # Same rows and keys; a few ratios differ in the last bit (Polars' float division is
        # not bit-stable across frame layouts: 5 / 7 gave 0.7142857142857142 in a shard).
        assert_frame_equal(a, b, check_exact=False, rtol=1e-14, atol=0.0)


def test_a_large_shop_trains_on_a_bounded_sample_recorded_in_the_model() -> None:
    shop = generate_shop(SynthShopConfig(n_customers=300, n_items=60, days=60, seed=5))
    as_of = run_as_of(shop.config.start + dt.timedelta(days=58))
    settings = _tiny_settings(max_train_lists=300)  # 100 customers per window of 3
    buyers = known_buyers(shop.events, as_of - dt.timedelta(days=7)).len()
    windows = training_windows(shop.events, shop.catalog, as_of, settings)
    assert windows.sample_fraction == pytest.approx(100 / buyers)
    lists = [f.get_column(USER_ID).n_unique() for f in windows.frames]
    everyone = training_windows(shop.events, shop.catalog, as_of, _tiny_settings())
    assert sum(lists) < 0.6 * sum(f.get_column(USER_ID).n_unique() for f in everyone.frames)
    outcome = train_ranker(shop.events, shop.catalog, as_of, settings, windows)
    assert outcome.meta["train_sample"] == {
        "fraction": round(100 / buyers, 6),
        "lists": sum(lists),
    }
    # Validation scores the same hash sample of the window's customers.
    assert (
        outcome.meta["validation"]["users"]
        < 0.6 * evaluated_users(shop.events, windows.used[0], 7).len()
    )


def test_training_reads_purchases_and_the_sample_only_and_builds_the_same_windows() -> None:
    shop = generate_shop(SynthShopConfig(n_customers=300, n_items=60, days=60, seed=5))
    as_of = run_as_of(shop.config.start + dt.timedelta(days=58))
    settings = _tiny_settings(max_train_lists=300)
    past = shop.events.filter(pl.col("ts") < as_of)
    read = training_events(past.lazy(), as_of, settings)
    fraction = training_sample_fraction(past, as_of, settings)
    assert 0.0 < fraction < 1.0
    views = pl.col("event_type") != "purchase"
    # Every purchase, and the views and carts of the sampled customers alone.
    assert read.filter(~views).height == past.filter(~views).height
    sampled_views = past.filter(views & in_sample(fraction))
    assert 0 < read.filter(views).height == sampled_views.height < past.filter(views).height
    whole = training_windows(past, shop.catalog, as_of, settings)
    lean = training_windows(read, shop.catalog, as_of, settings)
    assert whole.used == lean.used and whole.sample_fraction == lean.sample_fraction
    for a, b in zip(whole.frames, lean.frames, strict=True):
        assert_frame_equal(a, b)
    # A shop small enough to train on everyone reads every event.
    assert training_events(past.lazy(), as_of, _tiny_settings()).equals(past)


def test_shared_aggregates_from_purchases_alone_are_those_of_every_event() -> None:
    shop = generate_shop(SHOP)
    as_of = run_as_of(RUN_DATE)
    cfg = CandidateSettings()
    purchases = shop.events.filter(pl.col("event_type") == "purchase")
    assert purchases.height < shop.events.height
    every = shared_aggregates(shop.events, shop.catalog, as_of, cfg)
    bought = shared_aggregates(purchases, shop.catalog, as_of, cfg)
    assert_frame_equal(every.candidates.popular, bought.candidates.popular)
    assert_frame_equal(every.candidates.neighbors, bought.candidates.neighbors)
    assert every.candidates.ease is not None and bought.candidates.ease is not None
    assert (every.candidates.ease.weights == bought.candidates.ease.weights).all()
    # Joined by key downstream: group_by's row order is not part of the result.
    for a, b in [
        (every.features.items, bought.features.items),
        (every.features.categories, bought.features.categories),
    ]:
        assert_frame_equal(a.sort(a.columns[0]), b.sort(b.columns[0]))
