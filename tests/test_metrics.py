"""Evaluation protocol and metrics on hand-computed cases (values, not shapes)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tasks.constants import (
    CATEGORY,
    EVENT_TYPE,
    ITEM_ID,
    ORDER_ID,
    PRICE,
    PURCHASE,
    QUANTITY,
    RANK,
    SCORE,
    TS,
    USER_ID,
    VIEW,
)
from tasks.protocol.metrics import (
    coverage,
    diversity,
    evaluate_all,
    items_covered,
    novelty,
    paired_bootstrap,
    per_user_metrics,
    ranking_metrics,
)
from tasks.protocol.split import evaluated_users, truth_window
from tasks.timeutil import events_before

AS_OF = datetime(2011, 9, 1)
LOG2_3 = math.log2(3)


def events(rows: list[tuple[str, str, str, datetime]]) -> pl.DataFrame:
    """Canonical events from (user, item, event_type, ts)."""
    return pl.DataFrame(
        {
            USER_ID: [r[0] for r in rows],
            ITEM_ID: [r[1] for r in rows],
            EVENT_TYPE: [r[2] for r in rows],
            TS: [r[3] for r in rows],
            QUANTITY: [1] * len(rows),
            PRICE: [1.0] * len(rows),
            ORDER_ID: [None] * len(rows),
        },
        schema={
            USER_ID: pl.Utf8,
            ITEM_ID: pl.Utf8,
            EVENT_TYPE: pl.Utf8,
            TS: pl.Datetime("us"),
            QUANTITY: pl.Int64,
            PRICE: pl.Float64,
            ORDER_ID: pl.Utf8,
        },
    )


def recs_frame(lists: dict[str, list[str]]) -> pl.DataFrame:
    rows = [(u, item, r) for u, items in lists.items() for r, item in enumerate(items, 1)]
    return pl.DataFrame(
        {
            USER_ID: [r[0] for r in rows],
            ITEM_ID: [r[1] for r in rows],
            RANK: [r[2] for r in rows],
            SCORE: [-float(r[2]) for r in rows],
        },
        schema={USER_ID: pl.Utf8, ITEM_ID: pl.Utf8, RANK: pl.Int32, SCORE: pl.Float64},
    )


def truth_frame(sets: dict[str, list[str]]) -> pl.DataFrame:
    rows = [(u, i) for u, items in sets.items() for i in items]
    return pl.DataFrame(
        {USER_ID: [r[0] for r in rows], ITEM_ID: [r[1] for r in rows]},
        schema={USER_ID: pl.Utf8, ITEM_ID: pl.Utf8},
    )


# ---------------------------------------------------------------- protocol


@pytest.fixture
def window_events() -> pl.DataFrame:
    day = timedelta(days=1)
    end = AS_OF + timedelta(days=30)
    return events(
        [
            ("u1", "A", PURCHASE, AS_OF - timedelta(minutes=1)),  # train
            ("u1", "B", PURCHASE, AS_OF),  # exactly at T: truth, not train
            ("u1", "B", PURCHASE, AS_OF + day),  # same item again: one truth row
            ("u1", "C", PURCHASE, end),  # exactly at T + H: excluded
            ("u1", "D", PURCHASE, end - timedelta(microseconds=1)),  # last instant: truth
            ("u2", "E", PURCHASE, AS_OF + day),  # cold user: truth, not evaluated
            ("u3", "A", PURCHASE, AS_OF - day),  # only before: not evaluated
            ("u4", "A", VIEW, AS_OF - day),  # a view is not a purchase before T
            ("u4", "F", PURCHASE, AS_OF + day),
            ("u5", "A", PURCHASE, AS_OF - day),
            ("u5", "G", VIEW, AS_OF + day),  # a view in the window is not truth
            ("u6", "A", PURCHASE, AS_OF - 10 * day),
            ("u6", "A", PURCHASE, AS_OF + 2 * day),  # repeat purchase is truth
        ]
    )


def test_truth_window_boundaries(window_events: pl.DataFrame) -> None:
    truth = truth_window(window_events, AS_OF, 30)
    assert truth.rows() == [("u1", "B"), ("u1", "D"), ("u2", "E"), ("u4", "F"), ("u6", "A")]


def test_evaluated_users_need_purchase_before_and_inside(window_events: pl.DataFrame) -> None:
    users = evaluated_users(window_events, AS_OF, 30)
    assert users.to_list() == ["u1", "u6"]
    assert users.name == USER_ID


def test_events_before_excludes_as_of(window_events: pl.DataFrame) -> None:
    train = events_before(window_events, AS_OF)
    assert sorted(train.select(USER_ID, ITEM_ID).rows()) == [
        ("u1", "A"),
        ("u3", "A"),
        ("u4", "A"),
        ("u5", "A"),
        ("u6", "A"),
    ]
    assert train.get_column(TS).max() == AS_OF - timedelta(minutes=1)


def test_horizon_must_be_positive(window_events: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="horizon_days"):
        truth_window(window_events, AS_OF, 0)


# ---------------------------------------------------------------- ranking metrics

# k = 3.
# a: truth {i1, i3, i9}; recs i1 i2 i3 | i9 (rank 4 is beyond k and ignored).
#    hits at ranks 1 and 3.  DCG = 1/log2(2) + 1/log2(4) = 1.5
#    IDCG over min(3, 3) = 3 items = 1 + 1/log2(3) + 1/2;  NDCG = 1.5 / IDCG
#    recall = 2/3; MAP = (1/1 + 2/3) / 3 = 5/9; hit = 1; precision = 2/3
# b: truth {i5}; recs i4 i5 i6.  hit at rank 2.  DCG = 1/log2(3); IDCG = 1
#    NDCG = 1/log2(3); recall = 1; MAP = (1/2) / 1 = 0.5; hit = 1; precision = 1/3
# c: truth {i7}; no recs at all -> everything 0.
# d: truth {j1..j5} (larger than k); recs j1 x j2.  hits at ranks 1 and 3.
#    DCG = 1.5; IDCG over min(5, 3) = 3 items (same as a); recall = 2/5
#    MAP = (1 + 2/3) / min(5, 3) = 5/9; hit = 1; precision = 2/3
IDCG_3 = 1 + 1 / LOG2_3 + 0.5
EXPECTED = {
    "a": {"ndcg": 1.5 / IDCG_3, "recall": 2 / 3, "map": 5 / 9, "hitrate": 1.0, "precision": 2 / 3},
    "b": {"ndcg": 1 / LOG2_3, "recall": 1.0, "map": 0.5, "hitrate": 1.0, "precision": 1 / 3},
    "c": {"ndcg": 0.0, "recall": 0.0, "map": 0.0, "hitrate": 0.0, "precision": 0.0},
    "d": {"ndcg": 1.5 / IDCG_3, "recall": 2 / 5, "map": 5 / 9, "hitrate": 1.0, "precision": 2 / 3},
}


@pytest.fixture
def case() -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
    recs = recs_frame(
        {
            "a": ["i1", "i2", "i3", "i9"],
            "b": ["i4", "i5", "i6"],
            "d": ["j1", "x", "j2"],
            "z": ["i1", "i3"],  # not evaluated: ignored
        }
    )
    truth = truth_frame(
        {
            "a": ["i1", "i3", "i9"],
            "b": ["i5"],
            "c": ["i7"],
            "d": ["j1", "j2", "j3", "j4", "j5"],
            "z": ["i1"],
        }
    )
    users = pl.Series(USER_ID, ["d", "b", "a", "c"])
    return recs, truth, users


def test_per_user_metrics_hand_computed(case: tuple[pl.DataFrame, ...]) -> None:
    recs, truth, users = case
    per_user = per_user_metrics(recs, truth, users, k=3)
    assert per_user.get_column(USER_ID).to_list() == ["a", "b", "c", "d"]
    for row in per_user.iter_rows(named=True):
        expected = EXPECTED[row[USER_ID]]
        for name, value in expected.items():
            assert row[name] == pytest.approx(value), (row[USER_ID], name)


def test_ranking_metrics_are_means_over_users(case: tuple[pl.DataFrame, ...]) -> None:
    recs, truth, users = case
    means = ranking_metrics(recs, truth, users, k=3)
    assert set(means) == {"ndcg@3", "recall@3", "map@3", "hitrate@3", "precision@3"}
    assert means["ndcg@3"] == pytest.approx((2 * 1.5 / IDCG_3 + 1 / LOG2_3) / 4)
    assert means["recall@3"] == pytest.approx((2 / 3 + 1 + 2 / 5) / 4)
    assert means["map@3"] == pytest.approx((5 / 9 + 0.5 + 5 / 9) / 4)
    assert means["hitrate@3"] == pytest.approx(3 / 4)
    assert means["precision@3"] == pytest.approx((2 / 3 + 1 / 3 + 2 / 3) / 4)


def test_rank_beyond_k_is_ignored(case: tuple[pl.DataFrame, ...]) -> None:
    recs, truth, _ = case
    # at k = 4 the rank-4 hit of a counts: DCG = 1.5 + 1/log2(5), IDCG over 3 items
    a4 = per_user_metrics(recs, truth, pl.Series(["a"]), k=4).row(0, named=True)
    assert a4["ndcg"] == pytest.approx((1.5 + 1 / math.log2(5)) / IDCG_3)
    assert a4["recall"] == pytest.approx(1.0)
    assert a4["map"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert a4["precision"] == pytest.approx(3 / 4)


def test_user_without_recs_scores_zero() -> None:
    truth = truth_frame({"a": ["x"], "b": ["y"]})
    recs = recs_frame({"a": ["x"]})
    per_user = per_user_metrics(recs, truth, pl.Series(["a", "b"]), k=10)
    assert per_user.filter(pl.col(USER_ID) == "b").row(0)[1:] == (0.0, 0.0, 0.0, 0.0, 0.0)
    # a: one hit at rank 1 of 1 truth item, precision 1/10
    assert per_user.filter(pl.col(USER_ID) == "a").row(0)[1:] == pytest.approx(
        (1.0, 1.0, 1.0, 1.0, 0.1)
    )


def test_duplicate_item_in_a_list_is_one_hit_at_its_best_rank() -> None:
    recs = recs_frame({"a": ["x", "x", "y"]})
    row = per_user_metrics(recs, truth_frame({"a": ["x", "y"]}), pl.Series(["a"]), 3).row(
        0, named=True
    )
    # hits: x at rank 1, y at rank 3 -> DCG 1.5, IDCG over 2 items = 1 + 1/log2(3)
    assert row["ndcg"] == pytest.approx(1.5 / (1 + 1 / LOG2_3))
    assert row["map"] == pytest.approx((1 + 2 / 3) / 2)
    assert row["precision"] == pytest.approx(2 / 3)


def test_no_users_gives_nan_and_bad_k_raises(case: tuple[pl.DataFrame, ...]) -> None:
    recs, truth, _ = case
    means = ranking_metrics(recs, truth, pl.Series([], dtype=pl.Utf8), 10)
    assert all(math.isnan(v) for v in means.values())
    with pytest.raises(ValueError, match="k must be"):
        per_user_metrics(recs, truth, pl.Series(["a"]), 0)


# ---------------------------------------------------------------- beyond accuracy


def test_coverage_counts_items_in_top_k_only() -> None:
    recs = recs_frame({"u1": ["a", "b", "d"], "u2": ["b", "c", "e"]})
    assert items_covered(recs, 2) == 3  # a, b, c; d and e sit at rank 3
    assert coverage(recs, 2, catalog_size=6) == pytest.approx(0.5)
    assert coverage(recs, 3, catalog_size=10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="catalog_size"):
        coverage(recs, 2, catalog_size=0)


def test_novelty_hand_computed() -> None:
    day = timedelta(days=1)
    train = events(
        [
            ("u1", "A", PURCHASE, AS_OF - day),
            ("u1", "A", PURCHASE, AS_OF - 2 * day),  # a second purchase: still one buyer
            ("u2", "A", PURCHASE, AS_OF - day),
            ("u1", "B", PURCHASE, AS_OF - day),
            ("u3", "X", PURCHASE, AS_OF - day),
            ("u4", "Y", PURCHASE, AS_OF - day),
            ("u5", "A", VIEW, AS_OF - day),  # viewers are not purchasers
        ]
    )
    recs = recs_frame({"u1": ["A", "B", "X"], "u2": ["C"]})
    # 4 purchasers. p(A) = 2/4 -> 1 bit; p(B) = 1/4 -> 2 bits;
    # C never bought -> p = 1/(4 + 1) -> log2(5) bits; X at rank 3 is beyond k = 2.
    assert novelty(recs, train, 2) == pytest.approx((1 + 2 + math.log2(5)) / 3)


def test_diversity_hand_computed() -> None:
    catalog = pl.DataFrame(
        {ITEM_ID: ["A", "B", "C", "E"], CATEGORY: ["x", "x", "y", None]},
        schema={ITEM_ID: pl.Utf8, CATEGORY: pl.Utf8},
    )
    recs = recs_frame(
        {
            "u1": ["A", "B", "C", "C2"],  # pairs AB same, AC diff, BC diff -> 2/3; C2 beyond k
            "u2": ["A", "D", "E"],  # D unknown, E null category: each its own -> 3/3
            "u3": ["A"],  # no pair: left out of the mean
        }
    )
    assert diversity(recs, catalog, 3) == pytest.approx((2 / 3 + 1) / 2)
    assert math.isnan(diversity(recs_frame({"u": ["A"]}), catalog, 3))


# ---------------------------------------------------------------- bootstrap


def test_paired_bootstrap_interval_contains_true_difference() -> None:
    rng = np.random.default_rng(42)
    a = rng.normal(0.3, 0.1, 500)
    b = a - 0.05 + rng.normal(0.0, 0.02, 500)  # true mean difference 0.05
    res = paired_bootstrap(a, b, n_resamples=2000, seed=7)
    assert res.mean_diff == pytest.approx(float(np.mean(a - b)))
    assert res.low < 0.05 < res.high
    assert res.low < res.mean_diff < res.high
    # width close to the normal approximation 2 * 1.96 * sd / sqrt(n)
    normal_width = 2 * 1.96 * float(np.std(a - b, ddof=1)) / math.sqrt(500)
    assert res.high - res.low == pytest.approx(normal_width, rel=0.15)


def test_paired_bootstrap_is_deterministic_by_seed() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(200), rng.random(200)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, b, seed=3) != paired_bootstrap(a, b, seed=4)


def test_paired_bootstrap_constant_difference_and_bad_input() -> None:
    a = np.array([0.5, 0.2, 0.9])
    res = paired_bootstrap(a, a - 0.25, n_resamples=100)
    assert (res.mean_diff, res.low, res.high) == pytest.approx((0.25, 0.25, 0.25))
    with pytest.raises(ValueError, match="aligned"):
        paired_bootstrap(a, a[:2])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap(np.array([]), np.array([]))


# ---------------------------------------------------------------- evaluate_all


def test_evaluate_all_reports_every_metric_at_each_k(case: tuple[pl.DataFrame, ...]) -> None:
    recs, truth, users = case
    train = events([("a", "i1", PURCHASE, AS_OF), ("b", "i2", PURCHASE, AS_OF)])
    catalog = pl.DataFrame({ITEM_ID: [f"i{n}" for n in range(1, 11)], CATEGORY: ["c"] * 10})
    out = evaluate_all(recs, truth, users, train, catalog, ks=(3,))
    assert out["users"] == 4
    assert out["ndcg@3"] == pytest.approx((2 * 1.5 / IDCG_3 + 1 / LOG2_3) / 4)
    # evaluated users' top-3 items: i1 i2 i3 i4 i5 i6 j1 x j2 (z is not evaluated)
    assert out["items_covered@3"] == 9
    assert out["coverage@3"] == pytest.approx(0.9)
    # 2 purchasers; i1, i2 bought by one each -> 1 bit; the 7 others never -> log2(3)
    assert out["novelty@3"] == pytest.approx((2 + 7 * LOG2_3) / 9)
    # a and b: all category c -> 0; d: j1, x, j2 unknown, each its own -> 1
    assert out["diversity@3"] == pytest.approx(1 / 3)
    assert set(out) == {
        "users",
        *(f"{m}@3" for m in ("ndcg", "recall", "map", "hitrate", "precision")),
        "items_covered@3",
        "coverage@3",
        "novelty@3",
        "diversity@3",
    }
