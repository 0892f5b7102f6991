"""Synthetic shop: seeded, typed, and carrying the signal the pipeline is meant to learn."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pytest

from tasks.constants import (
    CART,
    CATALOG_COLUMNS,
    CATEGORY,
    EVENT_COLUMNS,
    EVENT_TYPE,
    ITEM_ID,
    ORDER_ID,
    PRICE,
    PURCHASE,
    QUANTITY,
    SESSION_ID,
    TS,
    USER_ID,
    VIEW,
)
from tasks.schema import EVENTS_SCHEMA
from tasks.synth.shop import (
    BAD_QUANTITY,
    BAD_TIMESTAMP,
    GROCERY_CATALOG_COLUMNS,
    GROCERY_CATALOG_SCHEMA,
    MALFORMED_KINDS,
    MISSING_USER_ID,
    TS_FORMAT,
    UNKNOWN_EVENT_TYPE,
    GroceryShopConfig,
    LandingReport,
    SyntheticShop,
    SynthShopConfig,
    generate_shop,
    write_landing,
)

DEFAULT = SynthShopConfig()


@pytest.fixture(scope="module")
def shop() -> SyntheticShop:
    return generate_shop(DEFAULT)


@pytest.fixture(scope="module")
def landing(shop: SyntheticShop, tmp_path_factory: pytest.TempPathFactory) -> LandingReport:
    return write_landing(shop, tmp_path_factory.mktemp("landing"))


@pytest.fixture(scope="module")
def landed_rows(landing: LandingReport) -> pl.DataFrame:
    """Every data row of every day file, as text, with the file's day beside it."""
    frames = [
        pl.read_csv(path, infer_schema=False).with_columns(
            pl.lit(dt.date.fromisoformat(path.stem)).alias("file_day")
        )
        for path in landing.files
    ]
    return pl.concat(frames)


def purchases(shop: SyntheticShop) -> pl.DataFrame:
    return shop.events.filter(pl.col(EVENT_TYPE) == PURCHASE)


def malformed_kind() -> pl.Expr:
    """The kind of a landed row, by the one field the generator breaks (null when clean)."""
    return (
        pl.when(pl.col(TS) == "not-a-time")
        .then(pl.lit(BAD_TIMESTAMP))
        .when(pl.col(QUANTITY) == "abc")
        .then(pl.lit(BAD_QUANTITY))
        .when(pl.col(EVENT_TYPE) == "click")
        .then(pl.lit(UNKNOWN_EVENT_TYPE))
        .when(pl.col(USER_ID).is_null())
        .then(pl.lit(MISSING_USER_ID))
    )


# --- the shop --------------------------------------------------------------------------------


def test_same_seed_gives_the_same_shop_and_another_seed_a_different_one(
    shop: SyntheticShop,
) -> None:
    again = generate_shop(SynthShopConfig())
    assert again.events.equals(shop.events)
    assert again.catalog.equals(shop.catalog)

    other = generate_shop(SynthShopConfig(seed=8))
    assert not other.events.equals(shop.events)
    assert not other.catalog[PRICE].equals(shop.catalog[PRICE])


def test_events_and_catalog_have_the_canonical_schema(shop: SyntheticShop) -> None:
    assert shop.events.columns == list(EVENT_COLUMNS)
    assert dict(shop.events.schema) == {
        USER_ID: pl.Utf8,
        ITEM_ID: pl.Utf8,
        EVENT_TYPE: pl.Utf8,
        TS: pl.Datetime("us"),
        QUANTITY: pl.Int64,
        PRICE: pl.Float64,
        ORDER_ID: pl.Utf8,
        SESSION_ID: pl.Utf8,
    }
    assert shop.catalog.columns == list(CATALOG_COLUMNS)
    assert dict(shop.catalog.schema) == {
        ITEM_ID: pl.Utf8,
        "title": pl.Utf8,
        CATEGORY: pl.Utf8,
        PRICE: pl.Float64,
    }
    assert shop.catalog.height == DEFAULT.n_items
    assert shop.catalog[ITEM_ID].n_unique() == DEFAULT.n_items
    assert shop.catalog[CATEGORY].n_unique() == DEFAULT.n_categories
    assert shop.catalog[ITEM_ID][0] == "i0001"
    assert shop.events.null_count().row(0, named=True) == {
        **dict.fromkeys(EVENT_COLUMNS, 0),
        ORDER_ID: shop.events.filter(pl.col(EVENT_TYPE) != PURCHASE).height,
    }
    ids = shop.events.select(
        pl.col(USER_ID).str.contains(r"^u\d{5}$").all(),
        pl.col(ITEM_ID).str.contains(r"^i\d{4}$").all(),
        pl.col(SESSION_ID).str.contains(r"^s\d{6}$").all(),
        pl.col(ORDER_ID).drop_nulls().str.contains(r"^o\d{6}$").all(),
    )
    assert ids.row(0) == (True, True, True, True)
    assert shop.events[TS].is_sorted()


def test_default_shop_is_tens_of_thousands_of_events_from_most_customers(
    shop: SyntheticShop,
) -> None:
    assert 15_000 <= shop.events.height <= 60_000
    assert shop.events[USER_ID].n_unique() >= 0.9 * DEFAULT.n_customers
    first, last = shop.events[TS].min(), shop.events[TS].max()
    assert first.date() >= DEFAULT.start
    assert last.date() <= DEFAULT.start + dt.timedelta(days=DEFAULT.days - 1)


def test_events_use_catalog_items_and_run_through_a_funnel(shop: SyntheticShop) -> None:
    events = shop.events
    assert events.join(shop.catalog, on=ITEM_ID, how="anti").height == 0
    assert events[QUANTITY].min() >= 1
    counts = dict(events[EVENT_TYPE].value_counts().iter_rows())
    assert set(counts) == {VIEW, CART, PURCHASE}
    assert counts[VIEW] > counts[CART] > counts[PURCHASE] > 0

    priced = events.join(
        shop.catalog.select(ITEM_ID, pl.col(PRICE).alias("list_price")), on=ITEM_ID
    )
    shown = priced.filter(pl.col(EVENT_TYPE) != PURCHASE)
    assert (shown[PRICE] == shown["list_price"]).all()
    paid = priced.filter(pl.col(EVENT_TYPE) == PURCHASE)
    ratio = paid[PRICE] / paid["list_price"]
    assert ratio.min() > 0.85 and ratio.max() < 1.15  # noise, not a different price
    assert abs(ratio.mean() - 1.0) < 0.01

    # An order is one checkout: one customer, one session, one moment.
    orders = paid.group_by(ORDER_ID).agg(
        pl.col(USER_ID).n_unique(), pl.col(SESSION_ID).n_unique(), pl.col(TS).n_unique()
    )
    assert (orders[USER_ID] == 1).all()
    assert (orders[SESSION_ID] == 1).all()
    assert (orders[TS] == 1).all()
    # Every purchase was carted earlier in its session.
    carted = events.filter(pl.col(EVENT_TYPE) == CART).select(
        SESSION_ID, ITEM_ID, pl.col(TS).alias("cart_ts")
    )
    bought = paid.join(carted, on=[SESSION_ID, ITEM_ID], how="left")
    assert bought["cart_ts"].null_count() == 0
    assert (bought["cart_ts"] < bought[TS]).all()


@pytest.mark.parametrize("weekend_factor", [1.0, 1.6, 2.5])
def test_weekend_days_have_weekend_factor_times_the_sessions(weekend_factor: float) -> None:
    config = SynthShopConfig(weekend_factor=weekend_factor)
    events = generate_shop(config).events
    per_day = events.group_by(pl.col(TS).dt.date().alias("day")).agg(
        pl.col(SESSION_ID).n_unique().alias("sessions")
    )
    days = pl.DataFrame(
        {"day": [config.start + dt.timedelta(days=d) for d in range(config.days)]}
    ).join(per_day, on="day", how="left")
    assert days["sessions"].null_count() == 0  # busy enough that no day is empty
    weekend = days.filter(pl.col("day").dt.weekday() >= 6)["sessions"].mean()
    weekday = days.filter(pl.col("day").dt.weekday() < 6)["sessions"].mean()
    assert weekend / weekday == pytest.approx(weekend_factor, rel=0.1)


def test_staples_make_repeat_purchases_a_large_share_on_a_steady_cadence(
    shop: SyntheticShop,
) -> None:
    bought = purchases(shop).with_columns(
        pl.col(ORDER_ID).n_unique().over(USER_ID, ITEM_ID).alias("orders")
    )
    repeat_share = (bought["orders"] >= 2).mean()
    assert repeat_share >= 0.4

    gaps = (
        bought.filter(pl.col("orders") >= 4)
        .select(USER_ID, ITEM_ID, pl.col(TS).dt.date().alias("day"))
        .unique()
        .sort(USER_ID, ITEM_ID, "day")
        .with_columns(pl.col("day").diff().dt.total_days().over(USER_ID, ITEM_ID).alias("gap"))
        .drop_nulls("gap")
        .group_by(USER_ID, ITEM_ID)
        .agg(
            pl.col("gap").median().alias("median"),
            (pl.col("gap").std() / pl.col("gap").mean()).alias("cv"),
        )
    )
    assert gaps.height >= 50
    # Re-orders come back every one to four weeks, and regularly enough to predict.
    assert 7 <= gaps["median"].median() <= 30
    assert gaps["cv"].median() < 0.4


def test_customers_buy_mostly_in_their_taste_categories(shop: SyntheticShop) -> None:
    per_category = (
        purchases(shop)
        .join(shop.catalog.select(ITEM_ID, CATEGORY), on=ITEM_ID)
        .group_by(USER_ID, CATEGORY)
        .len()
    )
    top = (
        per_category.group_by(USER_ID)
        .agg((pl.col("len").max() / pl.col("len").sum()).alias("top"), pl.col("len").sum())
        .filter(pl.col("len") >= 5)
    )
    assert top.height >= 100
    # Uniform taste would give about 1 / n_categories = 0.1.
    assert top["top"].mean() > 0.5


@pytest.mark.parametrize(
    "bad",
    [
        {"n_items": 5, "n_categories": 10},
        {"days": 0},
        {"n_customers": 0},
        {"weekend_factor": 0.0},
        {"malformed_rows_per_day": -1.0},
    ],
)
def test_impossible_configs_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SynthShopConfig(**bad)  # type: ignore[arg-type]


# --- landing files ---------------------------------------------------------------------------


def test_one_file_per_day_of_the_range_with_the_canonical_header(
    landing: LandingReport,
) -> None:
    expected = [DEFAULT.start + dt.timedelta(days=d) for d in range(DEFAULT.days)]
    assert [dt.date.fromisoformat(p.stem) for p in landing.files] == expected
    assert all(p.parent.name == "events" and p.suffix == ".csv" for p in landing.files)
    assert sorted(p.name for p in landing.files[0].parent.iterdir()) == [
        p.name for p in landing.files
    ]
    header = ",".join(EVENT_COLUMNS)
    assert {p.read_text().splitlines()[0] for p in landing.files} == {header}


def test_catalog_file_reads_back_as_the_catalog(
    shop: SyntheticShop, landing: LandingReport
) -> None:
    assert landing.catalog_path.name == "catalog.csv"
    back = pl.read_csv(landing.catalog_path, schema=dict(shop.catalog.schema))
    assert back.equals(shop.catalog)


def test_reported_malformed_rows_are_the_bad_rows_in_the_files(
    shop: SyntheticShop, landing: LandingReport, landed_rows: pl.DataFrame
) -> None:
    kinds = landed_rows.select(malformed_kind().alias("kind"))["kind"].value_counts()
    found = dict(kinds.drop_nulls("kind").iter_rows())
    assert landing.malformed_rows == {kind: found.get(kind, 0) for kind in MALFORMED_KINDS}
    assert set(landing.malformed_rows) == set(MALFORMED_KINDS)
    total = sum(landing.malformed_rows.values())
    # 120 days at 0.5 a day: 60 expected; seed 7 draws every kind.
    assert 30 <= total <= 95
    assert min(landing.malformed_rows.values()) > 0
    assert landing.rows_written == landed_rows.height == shop.events.height + total


def test_clean_rows_in_the_files_are_exactly_the_shop_events_inside_their_day(
    shop: SyntheticShop, landed_rows: pl.DataFrame
) -> None:
    clean = landed_rows.filter(malformed_kind().is_null())
    typed = clean.with_columns(
        pl.col(TS).str.strptime(pl.Datetime("us"), TS_FORMAT),
        pl.col(QUANTITY).cast(pl.Int64),
        pl.col(PRICE).cast(pl.Float64),
    )
    assert (typed[TS].dt.date() == typed["file_day"]).all()
    assert typed.select(EVENT_COLUMNS).sort(EVENT_COLUMNS).equals(shop.events.sort(EVENT_COLUMNS))
    # Malformed rows that keep a timestamp sit inside their file's day too.
    dated = landed_rows.filter(malformed_kind().is_not_null() & (pl.col(TS) != "not-a-time"))
    assert (
        dated[TS].str.strptime(pl.Datetime("us"), TS_FORMAT).dt.date() == dated["file_day"]
    ).all()


def test_landing_is_reproducible_and_a_rewrite_replaces_the_folder(
    shop: SyntheticShop, landing: LandingReport, tmp_path: Path
) -> None:
    again = write_landing(shop, tmp_path)
    assert again.malformed_rows == landing.malformed_rows
    assert [p.read_bytes() for p in again.files] == [p.read_bytes() for p in landing.files]

    short = generate_shop(SynthShopConfig(n_customers=20, n_items=30, days=5))
    report = write_landing(short, tmp_path)
    assert sorted((tmp_path / "events").iterdir()) == report.files
    assert not list((tmp_path / "events").glob(".*"))  # no temp files left behind


def test_quiet_shop_still_lands_every_day_and_no_bad_rows_when_asked(tmp_path: Path) -> None:
    config = SynthShopConfig(
        n_customers=2, n_items=10, n_categories=2, days=14, seed=3, malformed_rows_per_day=0.0
    )
    shop = generate_shop(config)
    report = write_landing(shop, tmp_path)
    assert len(report.files) == 14
    assert report.malformed_rows == dict.fromkeys(MALFORMED_KINDS, 0)
    assert report.rows_written == shop.events.height
    rows = [pl.read_csv(p, infer_schema=False).height for p in report.files]
    assert sum(rows) == shop.events.height
    assert 0 in rows  # two customers leave some days empty: header-only files
    empty = report.files[rows.index(0)].read_text()
    assert empty.strip() == ",".join(EVENT_COLUMNS)


def test_canonical_ingest_adapter_rejects_exactly_the_unparseable_rows(
    landing: LandingReport,
) -> None:
    from tasks.ingest.adapters import CanonicalAdapter
    from tasks.ingest.landing import read_raw

    adapter = CanonicalAdapter()
    rejected = sum(adapter.adapt(read_raw(p)).rejected.height for p in landing.files)
    assert rejected == landing.malformed_rows[BAD_TIMESTAMP] + landing.malformed_rows[BAD_QUANTITY]


# --- the default shop stays byte-identical ------------------------------------------------

# sha256 over the default shop's landing files (name, then bytes; catalog first, days in
# order). The grocery shape must not move a byte of it: golden files and tests rely on it.
DEFAULT_LANDING_SHA256 = "d5d19bf97393fe6339ed2a61d865f17527fb63a7754884a2a824dcb847272904"


def landing_digest(report: LandingReport) -> str:
    digest = hashlib.sha256()
    for path in [report.catalog_path, *report.files]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_default_shop_landing_files_are_byte_identical(landing: LandingReport) -> None:
    assert landing_digest(landing) == DEFAULT_LANDING_SHA256


# --- the grocery chain -----------------------------------------------------------------------

GROCERY = GroceryShopConfig(n_customers=200, n_items=8_000, days=84, seed=11)


@pytest.fixture(scope="module")
def grocery() -> SyntheticShop:
    return generate_shop(GROCERY)


def shop_digest(shop: SyntheticShop) -> str:
    digest = hashlib.sha256()
    digest.update(shop.events.write_csv().encode())
    digest.update(shop.catalog.write_csv().encode())
    return digest.hexdigest()


def test_grocery_same_seed_same_shop_and_another_seed_another(grocery: SyntheticShop) -> None:
    assert shop_digest(generate_shop(GROCERY)) == shop_digest(grocery)
    other = generate_shop(dataclasses.replace(GROCERY, seed=12))
    assert shop_digest(other) != shop_digest(grocery)
    assert not other.catalog[PRICE].equals(grocery.catalog[PRICE])


def test_grocery_is_purchases_only_one_order_per_trip(grocery: SyntheticShop) -> None:
    events = grocery.events
    assert events.columns == list(EVENT_COLUMNS)
    assert dict(events.schema) == dict(EVENTS_SCHEMA)
    assert events[EVENT_TYPE].unique().to_list() == [PURCHASE]  # no view, no cart
    assert events[ORDER_ID].null_count() == 0
    assert events[SESSION_ID].null_count() == events.height  # a till has no sessions
    assert events[QUANTITY].min() >= 1
    assert events[TS].is_sorted()
    assert events.join(grocery.catalog, on=ITEM_ID, how="anti").height == 0
    orders = events.group_by(ORDER_ID).agg(
        pl.col(USER_ID).n_unique().alias("users"),
        pl.col(TS).n_unique().alias("moments"),
        pl.len().alias("lines"),
        pl.col(ITEM_ID).n_unique().alias("items"),
    )
    assert (orders["users"] == 1).all()
    assert (orders["moments"] == 1).all()
    assert (orders["lines"] == orders["items"]).all()  # a line per distinct item
    # Till hours: the store opens at 7 and closes at 22.
    hours = events[TS].dt.hour()
    assert hours.min() >= 7 and hours.max() <= 21


def test_grocery_baskets_hold_10_to_30_lines(grocery: SyntheticShop) -> None:
    lines = grocery.events.group_by(ORDER_ID).len()["len"]
    assert lines.min() >= GROCERY.basket_min == 10
    assert lines.max() <= GROCERY.basket_max == 30
    assert 15 <= lines.mean() <= 21  # household means drawn from 12-24, clipped
    assert lines.n_unique() >= 15  # sizes vary, not a constant basket


def test_grocery_households_shop_weekly_with_their_own_rhythm(grocery: SyntheticShop) -> None:
    trips = grocery.events.unique(ORDER_ID).select(
        USER_ID, pl.col(TS).dt.weekday().alias("weekday")
    )
    per_household = trips.group_by(USER_ID).agg(
        (pl.len() / (GROCERY.days / 7)).alias("per_week"),
        (pl.col("weekday").value_counts().struct.field("count").max() / pl.len()).alias("main"),
    )
    assert per_household.height >= 0.97 * GROCERY.n_customers
    assert 0.45 <= per_household["per_week"].median() <= 0.85  # trips_per_week = 0.65
    # Household-level variation: the busiest households shop several times as often.
    q10, q90 = per_household["per_week"].quantile(0.1), per_household["per_week"].quantile(0.9)
    assert q90 / q10 >= 2.5
    # Most trips of a household fall on its own weekday (the weekly shop).
    assert per_household["main"].median() >= 0.6


def test_grocery_staples_are_rebought_on_most_trips(grocery: SyntheticShop) -> None:
    events = grocery.events
    trips = events.group_by(USER_ID).agg(pl.col(ORDER_ID).n_unique().alias("trips"))
    shares = (
        events.group_by(USER_ID, ITEM_ID)
        .agg(pl.col(ORDER_ID).n_unique().alias("bought"))
        .join(trips.filter(pl.col("trips") >= 6), on=USER_ID)
        .with_columns((pl.col("bought") / pl.col("trips")).alias("share"))
    )
    staples = shares.group_by(USER_ID).agg((pl.col("share") >= 0.5).sum().alias("staples"))
    assert staples.height >= 100
    # Nearly every household has items it buys on at least half of its trips...
    assert (staples["staples"] >= 2).mean() >= 0.9
    # ...and staple sets differ between households: no item is everyone's staple.
    everyone = shares.filter(pl.col("share") >= 0.5).group_by(ITEM_ID).len()
    assert everyone["len"].max() < 0.5 * staples.height
    # Staple aisles (milk, bread, ...) are bought by most households.
    milk = events.join(grocery.catalog.filter(pl.col(CATEGORY) == "milk"), on=ITEM_ID, how="semi")
    assert milk[USER_ID].n_unique() >= 0.35 * GROCERY.n_customers
    # Repeat buying is most of the volume, as in a real chain.
    repeat = shares.filter(pl.col("bought") >= 2)["bought"].sum() / shares["bought"].sum()
    assert repeat >= 0.5


def test_grocery_catalog_is_large_long_tail_with_brands(grocery: SyntheticShop) -> None:
    catalog = grocery.catalog
    assert catalog.columns == list(GROCERY_CATALOG_COLUMNS)
    assert catalog.columns == [ITEM_ID, "title", CATEGORY, "brand", PRICE]
    assert dict(catalog.schema) == dict(GROCERY_CATALOG_SCHEMA)
    assert catalog.height == catalog[ITEM_ID].n_unique() == GROCERY.n_items
    assert catalog[CATEGORY].n_unique() == GROCERY.n_categories
    assert catalog["brand"].null_count() == 0 and catalog["brand"].n_unique() >= 1_000
    assert catalog[ITEM_ID].str.contains(r"^p\d{5}$").all()
    # Long tail: a tenth of the items carry most lines, and many are never bought.
    counts = grocery.events.group_by(ITEM_ID).len()["len"].sort(descending=True)
    top = counts.head(GROCERY.n_items // 10).sum() / counts.sum()
    assert top >= 0.5
    assert counts.len() <= 0.8 * GROCERY.n_items


def test_grocery_default_is_the_size_of_a_real_chain() -> None:
    config = GroceryShopConfig()
    assert config.n_items >= 60_000 and config.n_customers == 2_500 and config.days == 365
    big = generate_shop(GroceryShopConfig(n_customers=30, n_items=60_000, days=14))
    assert big.catalog.height == 60_000
    assert big.catalog[PRICE].null_count() == pytest.approx(6_000, rel=0.05)


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3])
def test_grocery_items_without_a_price_have_none_anywhere(share: float) -> None:
    shop = generate_shop(dataclasses.replace(GROCERY, days=14, null_price_share=share))
    catalog_null = shop.catalog[PRICE].null_count() / shop.catalog.height
    assert catalog_null == pytest.approx(share, abs=0.015)
    unpriced = shop.catalog.filter(pl.col(PRICE).is_null()).select(ITEM_ID)
    lines = shop.events.with_columns(pl.col(ITEM_ID).is_in(unpriced[ITEM_ID].implode()).alias("u"))
    # An unpriced item has a null price on every line, a priced one never.
    assert lines.filter(pl.col("u"))[PRICE].null_count() == lines["u"].sum()
    assert lines.filter(~pl.col("u"))[PRICE].null_count() == 0
    priced = lines.filter(~pl.col("u")).join(
        shop.catalog.select(ITEM_ID, pl.col(PRICE).alias("list")), on=ITEM_ID
    )
    ratio = (priced[PRICE] / priced["list"]).round(2)
    assert ratio.min() >= 0.75 and ratio.max() <= 1.01  # list price, or a 20% promotion


@pytest.mark.parametrize(
    "bad",
    [
        {"n_categories": 10},  # fewer aisles than staple aisles
        {"n_items": 100, "n_categories": 200},
        {"basket_min": 0},
        {"basket_min": 31},
        {"trips_per_week": 0.0},
        {"null_price_share": 1.5},
        {"n_customers": 0},
    ],
)
def test_impossible_grocery_configs_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GroceryShopConfig(**bad)  # type: ignore[arg-type]


def test_grocery_landing_round_trips_with_empty_price_cells(
    grocery: SyntheticShop, tmp_path: Path
) -> None:
    report = write_landing(grocery, tmp_path)
    assert report.malformed_rows == dict.fromkeys(MALFORMED_KINDS, 0)
    assert [dt.date.fromisoformat(p.stem) for p in report.files] == [
        GROCERY.start + dt.timedelta(days=d) for d in range(GROCERY.days)
    ]
    assert report.catalog_path == tmp_path / "catalog.csv"
    assert report.catalog_path.read_text().splitlines()[0] == "item_id,title,category,brand,price"
    catalog = pl.read_csv(report.catalog_path, schema=dict(GROCERY_CATALOG_SCHEMA))
    assert catalog.equals(grocery.catalog)
    unpriced = grocery.catalog.filter(pl.col(PRICE).is_null())[ITEM_ID][0]
    assert f"{unpriced}," in report.catalog_path.read_text()
    assert any(line.endswith(",") for line in report.catalog_path.read_text().splitlines())

    text = pl.concat([pl.read_csv(p, infer_schema=False) for p in report.files])
    assert text.height == report.rows_written == grocery.events.height
    # A missing price is an empty cell (read back as null), as real exports write it.
    assert text[PRICE].null_count() == grocery.events[PRICE].null_count() > 0
    back = text.with_columns(
        pl.col(TS).str.strptime(pl.Datetime("us"), TS_FORMAT),
        pl.col(QUANTITY).cast(pl.Int64),
        pl.col(PRICE).cast(pl.Float64),
    ).cast(EVENTS_SCHEMA)
    assert back.sort(EVENT_COLUMNS).equals(grocery.events.sort(EVENT_COLUMNS))
    again = write_landing(grocery, tmp_path)
    assert [p.read_bytes() for p in again.files] == [p.read_bytes() for p in report.files]


def test_grocery_malformed_rows_are_purchases_when_asked(tmp_path: Path) -> None:
    config = dataclasses.replace(GROCERY, days=28, malformed_rows_per_day=2.0)
    report = write_landing(generate_shop(config), tmp_path)
    rows = pl.concat([pl.read_csv(p, infer_schema=False) for p in report.files])
    bad = rows.filter(malformed_kind().is_not_null())
    assert bad.height == sum(report.malformed_rows.values()) > 0
    assert set(bad[EVENT_TYPE].unique()) <= {PURCHASE, "click"}  # still a till, no views


def test_priced_grocery_files_pass_the_canonical_adapter(tmp_path: Path) -> None:
    # Priced only: ingesting null prices is h-ingest's change, not this generator's test.
    shop = generate_shop(dataclasses.replace(GROCERY, days=14, null_price_share=0.0))
    report = write_landing(shop, tmp_path)

    from tasks.ingest.adapters import CanonicalAdapter
    from tasks.ingest.landing import read_raw

    adapter = CanonicalAdapter()
    adapted = [adapter.adapt(read_raw(p)) for p in report.files]
    assert sum(a.rejected.height for a in adapted) == 0
    assert sum(a.events.height for a in adapted) == shop.events.height


def test_demo_refuses_an_unknown_shop_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["demo", "--shop", "bakery", "--home", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown shop 'bakery': use web or grocery" in result.output
    assert not any(tmp_path.iterdir())  # nothing generated, nothing written
