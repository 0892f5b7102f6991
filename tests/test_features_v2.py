"""The version-2 features (repurchase cycle, activity and item trends, category share,
views/carts), hand-computed on a tiny event set, and blind to events at or after as_of."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.features.build import FEATURE_GROUPS, build_features, repurchase_gaps, shared_features
from tasks.schema import EVENTS_SCHEMA

AS_OF = dt.datetime(2026, 3, 1)


def day(n: int) -> dt.datetime:
    """Noon of the day n days before AS_OF's day: n + 0.5 days before AS_OF."""
    return AS_OF - dt.timedelta(days=n) - dt.timedelta(hours=12)


def _events(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=EVENTS_SCHEMA, orient="row")


EVENTS = _events(
    [
        # u1 buys tea every 10 days; a cup with the first tea, coffee with the third, and an
        # old item 100 days ago.
        ("u1", "old", "purchase", day(100), 1, 1.0, "t0", None),
        ("u1", "tea", "purchase", day(40), 1, 2.0, "t1", None),
        ("u1", "cup", "purchase", day(40), 1, 5.0, "t1", None),
        ("u1", "tea", "purchase", day(30), 1, 2.0, "t2", None),
        ("u1", "tea", "purchase", day(20), 1, 2.0, "t3", None),
        ("u1", "coffee", "purchase", day(20), 1, 3.0, "t3", None),
        ("u1", "tea", "purchase", day(10), 1, 2.0, "t4", None),
        # u2 buys tea twice, 20 days apart.
        ("u2", "tea", "purchase", day(25), 1, 2.0, "s1", None),
        ("u2", "tea", "purchase", day(5), 1, 2.0, "s2", None),
        # u3 only looks: tea viewed twice (once in the last 30 days) and carted once.
        ("u3", "tea", "view", day(50), 1, 2.0, None, "v1"),
        ("u3", "tea", "view", day(2), 1, 2.0, None, "v2"),
        ("u3", "tea", "cart", day(2), 1, 2.0, None, "v2"),
    ]
)
CATALOG = pl.DataFrame(
    {
        "item_id": ["old", "tea", "cup", "coffee"],
        "title": ["Old", "Tea", "Cup", "Coffee"],
        "category": ["misc", "drinks", "kitchen", "drinks"],
        "price": [1.0, 2.0, 5.0, 3.0],
    }
)
PAIRS = pl.DataFrame(
    {
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u3", "u3"],
        "item_id": ["tea", "coffee", "cup", "tea", "coffee", "tea", "cup"],
    }
)


def _row(frame: pl.DataFrame, user: str, item: str) -> dict:
    return frame.filter((pl.col("user_id") == user) & (pl.col("item_id") == item)).row(
        0, named=True
    )


@pytest.fixture(scope="module")
def feats() -> pl.DataFrame:
    return build_features(EVENTS, PAIRS, CATALOG, AS_OF)


def test_every_new_feature_is_a_column(feats: pl.DataFrame) -> None:
    new = [c for cols in FEATURE_GROUPS.values() for c in cols]
    assert set(new) <= set(feats.columns)


def test_repurchase_cycle_of_a_customer_buying_every_ten_days(feats: pl.DataFrame) -> None:
    tea = _row(feats, "u1", "tea")
    assert tea["ui_median_gap"] == pytest.approx(10.0)
    # last tea 10.5 days ago: a little past the cycle
    assert tea["ui_cycle_ratio"] == pytest.approx(1.05)
    # the item's median gap over every customer: u1's 10, 10, 10 and u2's 20
    assert tea["i_repurchase_gap"] == pytest.approx(10.0)
    assert tea["ui_due_vs_item"] == pytest.approx(1.05)
    u2 = _row(feats, "u2", "tea")
    assert u2["ui_median_gap"] == pytest.approx(20.0)
    assert u2["ui_cycle_ratio"] == pytest.approx(5.5 / 20.0)
    assert u2["ui_due_vs_item"] == pytest.approx(5.5 / 10.0)
    # bought once: no cycle of its own, and no item cycle (nobody bought coffee twice)
    coffee = _row(feats, "u1", "coffee")
    assert coffee["ui_median_gap"] is None and coffee["ui_cycle_ratio"] is None
    assert coffee["i_repurchase_gap"] is None and coffee["ui_due_vs_item"] is None
    # never bought by the customer: the item's cycle is known, the customer's is not
    u2_coffee = _row(feats, "u2", "coffee")
    assert u2_coffee["ui_median_gap"] is None and u2_coffee["ui_due_vs_item"] is None


def test_gaps_are_between_consecutive_orders_and_same_day_orders_count_one_day() -> None:
    two_orders_one_day = _events(
        [
            ("u1", "tea", "purchase", day(10), 1, 2.0, "a", None),
            ("u1", "tea", "purchase", day(10), 1, 2.0, "b", None),
            ("u1", "tea", "purchase", day(10), 1, 2.0, "b", None),  # a second line of b
        ]
    )
    gaps = repurchase_gaps(
        two_orders_one_day.with_columns(
            pl.lit(10.5).alias("age"), pl.col("order_id").alias("order")
        )
    )
    assert gaps.get_column("gap").to_list() == [0.0]
    feats = build_features(two_orders_one_day, PAIRS.head(1), CATALOG, AS_OF)
    # a gap of 0 days is divided as 1 day (MIN_GAP_DAYS), never by zero
    assert _row(feats, "u1", "tea")["ui_cycle_ratio"] == pytest.approx(10.5)


def test_activity_trend_and_distinct_items(feats: pl.DataFrame) -> None:
    u1 = _row(feats, "u1", "tea")
    assert u1["u_items"] == 4 and u1["u_items_90d"] == 3  # "old" is 100.5 days old
    # orders in the last 30 days: t3 (20.5), t4 (10.5); last 90: t1..t4 -> (2*3+1)/(4+1)
    assert u1["u_trend"] == pytest.approx(7 / 5)
    u2 = _row(feats, "u2", "tea")
    assert u2["u_trend"] == pytest.approx((2 * 3 + 1) / (2 + 1))


def test_item_trend_and_recent_share(feats: pl.DataFrame) -> None:
    tea = _row(feats, "u1", "tea")
    # tea: 2 buyers, both within 30 (and 90) days
    assert tea["i_trend_90d"] == pytest.approx(7 / 3) and tea["i_recent_share"] == 1.0
    cup = _row(feats, "u1", "cup")
    # cup: one buyer 40.5 days ago -> 0 in 30 days, 1 in 90
    assert cup["i_trend_90d"] == pytest.approx(1 / 2) and cup["i_recent_share"] == 1.0
    items = shared_features(EVENTS, CATALOG, AS_OF).items
    old = items.filter(pl.col("item_id") == "old").row(0, named=True)
    assert old["i_recent_share"] == 0.0 and old["i_trend_90d"] == 1.0


def test_category_share_is_the_items_part_of_the_customers_category(
    feats: pl.DataFrame,
) -> None:
    # u1's drinks lines: tea x4, coffee x1
    assert _row(feats, "u1", "tea")["ui_category_share"] == pytest.approx(0.8)
    assert _row(feats, "u1", "coffee")["ui_category_share"] == pytest.approx(0.2)
    assert _row(feats, "u1", "cup")["ui_category_share"] == pytest.approx(1.0)
    # u2 buys drinks but never coffee; u3 never bought anything
    assert _row(feats, "u2", "coffee")["ui_category_share"] == 0.0
    assert _row(feats, "u3", "tea")["ui_category_share"] == 0.0


def test_views_and_carts_over_all_time_and_zero_without_them(feats: pl.DataFrame) -> None:
    u3 = _row(feats, "u3", "tea")
    assert (u3["ui_views"], u3["ui_carts"]) == (2, 1)
    assert (u3["ui_views_30d"], u3["ui_carts_30d"]) == (1, 1)
    # a pair with purchases only, and a pair never touched: 0, not missing
    assert (_row(feats, "u1", "tea")["ui_views"], _row(feats, "u1", "tea")["ui_carts"]) == (0, 0)
    assert (_row(feats, "u3", "cup")["ui_views"], _row(feats, "u3", "cup")["ui_carts"]) == (0, 0)
    # a shop without views or carts: every pair 0
    bought = EVENTS.filter(pl.col("event_type") == "purchase")
    none = build_features(bought, PAIRS, CATALOG, AS_OF)
    assert none.get_column("ui_views").to_list() == [0] * PAIRS.height
    assert none.get_column("ui_carts").to_list() == [0] * PAIRS.height


def test_no_new_feature_reads_an_event_at_or_after_as_of(feats: pl.DataFrame) -> None:
    future = _events(
        [
            ("u1", "tea", "purchase", AS_OF, 3, 2.0, "f1", None),
            ("u1", "coffee", "purchase", AS_OF + dt.timedelta(days=2), 1, 3.0, "f2", None),
            ("u2", "coffee", "purchase", AS_OF + dt.timedelta(hours=1), 1, 3.0, "f3", None),
            ("u3", "tea", "view", AS_OF, 1, 2.0, None, "f4"),
            ("u3", "cup", "cart", AS_OF + dt.timedelta(days=1), 1, 5.0, None, "f5"),
        ]
    )
    with_future = build_features(pl.concat([EVENTS, future]), PAIRS, CATALOG, AS_OF)
    assert_frame_equal(feats, with_future)
    # The same events a second earlier than as_of do change them (the test can see a change).
    just_before = future.with_columns(pl.lit(AS_OF - dt.timedelta(seconds=1)).alias("ts"))
    earlier = build_features(pl.concat([EVENTS, just_before]), PAIRS, CATALOG, AS_OF)
    assert _row(earlier, "u3", "cup")["ui_carts"] == 1
    assert _row(earlier, "u1", "tea")["ui_cycle_ratio"] < 0.001
