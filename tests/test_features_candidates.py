"""Candidates and point-in-time features on a tiny hand-made shop."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.candidates.generate import generate_candidates, history_candidates, popular_items
from tasks.features.build import build_features
from tasks.schema import EVENTS_SCHEMA
from tasks.settings import CandidateSettings

AS_OF = dt.datetime(2026, 3, 1)


def _events(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema=EVENTS_SCHEMA,
        orient="row",
    )


def day(n: int, hour: int = 12) -> dt.datetime:
    """Noon of the day n days before AS_OF's day: n + 0.5 days before AS_OF."""
    return AS_OF - dt.timedelta(days=n) + dt.timedelta(hours=hour - 24)


EVENTS = _events(
    [
        ("u1", "milk", "purchase", day(30), 2, 1.0, "o1", None),
        ("u1", "bread", "purchase", day(30), 1, 2.0, "o1", None),
        ("u1", "milk", "purchase", day(10), 1, 1.0, "o2", None),
        ("u2", "milk", "purchase", day(5), 1, 1.0, "o3", None),
        ("u2", "jam", "purchase", day(5), 1, 3.0, "o3", None),
        ("u3", "bread", "view", day(2), 1, 2.0, None, "s1"),
    ]
)
CATALOG = pl.DataFrame(
    {
        "item_id": ["milk", "bread", "jam"],
        "title": ["Milk", "Bread", "Jam"],
        "category": ["dairy", "bakery", "spreads"],
        "price": [1.0, 2.0, 3.0],
    }
)
CFG = CandidateSettings(history_tau_days=10.0, popular_per_user=2)


def test_history_scores_are_recency_weighted_with_purchases_above_views() -> None:
    hist = history_candidates(EVENTS, AS_OF, CFG).sort("user_id", "hist_rank")
    u1 = hist.filter(pl.col("user_id") == "u1")
    assert u1.get_column("item_id").to_list() == ["milk", "bread"]
    # milk bought 30.5 and 10.5 days before as_of, tau = 10 days
    assert u1.row(0, named=True)["hist_score"] == pytest.approx(math.exp(-3.05) + math.exp(-1.05))
    u3 = hist.filter(pl.col("user_id") == "u3").row(0, named=True)
    assert u3["item_id"] == "bread" and u3["hist_score"] == pytest.approx(0.1 * math.exp(-0.25))


def test_popular_items_count_distinct_buyers_with_ties_by_id() -> None:
    popular = popular_items(EVENTS, AS_OF, days=31, n=3)
    assert popular.rows() == [("milk", 2.0, 1), ("bread", 1.0, 2), ("jam", 1.0, 3)]
    # 30 days leave out order o1 (30.5 days old); 7 days only see u2's order.
    assert popular_items(EVENTS, AS_OF, days=30, n=3).get_column("item_id").to_list() == [
        "milk",
        "jam",
    ]
    assert popular_items(EVENTS, AS_OF, days=7, n=3).get_column("item_id").to_list() == [
        "jam",
        "milk",
    ]


def test_candidates_merge_sources_and_copurchase_finds_basket_neighbours() -> None:
    cands = generate_candidates(EVENTS, pl.Series(["u2"]), AS_OF, CFG)
    by_item = {r["item_id"]: r for r in cands.iter_rows(named=True)}
    assert set(by_item) == {"milk", "jam", "bread"}
    # bread was never bought by u2 but shares order o1 with milk, which u2 bought.
    assert by_item["bread"]["hist_rank"] == 9_999 and by_item["bread"]["covis_score"] > 0
    # hist, covis, pop and (since EASE joined the sources) ease: jam, bought with milk, votes
    # for it in EASE.
    assert by_item["milk"]["n_sources"] == 4


def test_features_match_hand_computed_values() -> None:
    cands = generate_candidates(EVENTS, pl.Series(["u1"]), AS_OF, CFG)
    feats = build_features(EVENTS, cands, CATALOG, AS_OF)
    milk = feats.filter(pl.col("item_id") == "milk").row(0, named=True)
    assert milk["ui_orders"] == 2
    assert milk["ui_qty"] == 3.0
    assert milk["ui_days_since_last"] == pytest.approx(10.5)
    assert milk["ui_days_since_first"] == pytest.approx(30.5)
    assert milk["ui_cadence"] == pytest.approx(20.0)
    assert milk["u_orders"] == 2 and milk["u_items"] == 2
    assert milk["u_basket_lines"] == pytest.approx(1.5)
    assert milk["i_buyers"] == 2 and milk["i_repeat_rate"] == pytest.approx(0.5)
    assert milk["uc_share"] == pytest.approx(2 / 3)


def test_no_feature_reads_an_event_at_or_after_as_of() -> None:
    """Adding any events at or after as_of changes neither candidates nor features."""
    future = _events(
        [
            ("u1", "jam", "purchase", AS_OF, 50, 9.0, "o9", None),
            ("u1", "milk", "purchase", AS_OF + dt.timedelta(days=3), 5, 1.0, "o10", None),
            ("u2", "bread", "view", AS_OF + dt.timedelta(hours=1), 1, 2.0, None, "s9"),
            ("u4", "jam", "purchase", AS_OF + dt.timedelta(days=40), 1, 3.0, "o11", None),
        ]
    )
    users = pl.Series(["u1", "u2", "u3"])
    with_future = pl.concat([EVENTS, future])
    cands = generate_candidates(EVENTS, users, AS_OF, CFG)
    assert_frame_equal(cands, generate_candidates(with_future, users, AS_OF, CFG))
    assert_frame_equal(
        build_features(EVENTS, cands, CATALOG, AS_OF),
        build_features(with_future, cands, CATALOG, AS_OF),
    )
