"""Baseline recommenders on a tiny fixture with golden top-k lists computed by hand."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tasks.baselines.recommenders import ease, item_knn, popularity, repurchase
from tasks.constants import (
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

AS_OF = datetime(2011, 9, 1)

# (user, item, event_type, days relative to AS_OF, quantity)
ROWS = [
    ("u1", "A", PURCHASE, -1, 1),
    ("u1", "A", PURCHASE, -40, 1),
    ("u1", "B", PURCHASE, -2, 1),
    ("u2", "A", PURCHASE, -5, 2),
    ("u2", "B", PURCHASE, -5, 3),
    ("u2", "E", PURCHASE, -90, 1),
    ("u3", "A", PURCHASE, -10, 1),
    ("u3", "C", PURCHASE, -10, 5),
    ("u4", "C", PURCHASE, -3, 1),
    ("u4", "D", PURCHASE, -3, 1),
    ("u4", "G", PURCHASE, -50, 1),
    ("u5", "B", PURCHASE, -100, 1),
    ("u5", "E", PURCHASE, -60, 1),
    ("u5", "F", PURCHASE, -60, 1),
    ("u6", "H", PURCHASE, -20, 1),  # H: nobody else bought it
    # at AS_OF itself: truth, never training (D would lead popularity if it leaked)
    ("u1", "D", PURCHASE, 0, 9),
    ("u2", "D", PURCHASE, 0, 9),
    ("u5", "D", PURCHASE, 0, 9),
    # views are not purchases (F would tie for second if they counted)
    ("u1", "F", VIEW, -1, 1),
    ("u2", "F", VIEW, -1, 1),
    ("u3", "F", VIEW, -1, 1),
]
# u9 has no history at all.
USERS = pl.Series(USER_ID, ["u1", "u2", "u3", "u4", "u5", "u6", "u9"])

# Popularity, distinct buyers in [AS_OF - 30d, AS_OF), then all-time buyers, then item_id:
#   A 3 (u1 u2 u3) | B 2, all-time 3 (u5 bought it 100 days ago) | C 2, all-time 2 |
#   D 1, 1 | H 1, 1 | E 0, 2 | F 0, 1 | G 0, 1
POPULAR = ["A", "B", "C", "D", "H", "E", "F", "G"]


@pytest.fixture
def train() -> pl.DataFrame:
    return pl.DataFrame(
        {
            USER_ID: [r[0] for r in ROWS],
            ITEM_ID: [r[1] for r in ROWS],
            EVENT_TYPE: [r[2] for r in ROWS],
            TS: [AS_OF + timedelta(days=r[3]) for r in ROWS],
            QUANTITY: [r[4] for r in ROWS],
            PRICE: [1.0] * len(ROWS),
            ORDER_ID: [None] * len(ROWS),
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


def lists(recs: pl.DataFrame) -> dict[str, list[str]]:
    ordered = recs.sort(USER_ID, RANK)
    return {
        user: group.get_column(ITEM_ID).to_list()
        for (user,), group in ordered.group_by(USER_ID, maintain_order=True)
    }


def scores(recs: pl.DataFrame, user: str) -> list[float]:
    return recs.filter(pl.col(USER_ID) == user).sort(RANK).get_column(SCORE).to_list()


def assert_well_formed(recs: pl.DataFrame, users: pl.Series, k: int) -> None:
    """Every user: exactly k distinct items, ranks 1..k, scores not increasing with rank."""
    assert recs.columns == [USER_ID, ITEM_ID, RANK, SCORE]
    assert recs.schema[RANK] == pl.Int32 and recs.schema[SCORE] == pl.Float64
    assert sorted(recs.get_column(USER_ID).unique().to_list()) == sorted(users.to_list())
    for user in users:
        mine = recs.filter(pl.col(USER_ID) == user).sort(RANK)
        assert mine.get_column(RANK).to_list() == list(range(1, k + 1))
        assert mine.get_column(ITEM_ID).n_unique() == k
        s = mine.get_column(SCORE).to_list()
        assert all(a >= b for a, b in itertools.pairwise(s))


def test_popularity_same_list_for_everyone(train: pl.DataFrame) -> None:
    recs = popularity(train, USERS, AS_OF, 3)
    assert_well_formed(recs, USERS, 3)
    assert lists(recs) == {u: ["A", "B", "C"] for u in USERS}  # B before C: all-time buyers
    assert scores(recs, "u9") == [3.0, 2.0, 2.0]  # distinct buyers in the last 30 days


def test_popularity_orders_items_outside_the_window(train: pl.DataFrame) -> None:
    recs = popularity(train, pl.Series(["u1"]), AS_OF, 8)
    assert lists(recs) == {"u1": POPULAR}
    assert scores(recs, "u1") == [3.0, 2.0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_repurchase_golden(train: pl.DataFrame) -> None:
    recs = repurchase(train, USERS, AS_OF, 3, tau=30.0)
    assert_well_formed(recs, USERS, 3)
    assert lists(recs) == {
        # A: e^(-1/30) + e^(-40/30) = 1.2308 > B: e^(-2/30) = 0.9355; padded with C
        "u1": ["A", "B", "C"],
        # A and B tie at e^(-5/30); B has more units (3 > 2); then E: e^(-3)
        "u2": ["B", "A", "E"],
        # A and C tie at e^(-10/30); C has 5 units; padded with B (A is already there)
        "u3": ["C", "A", "B"],
        # C and D tie at e^(-3/30) with 1 unit each: item_id; then G: e^(-50/30)
        "u4": ["C", "D", "G"],
        # E and F tie at e^(-2): item_id; then B: e^(-100/30)
        "u5": ["E", "F", "B"],
        "u6": ["H", "A", "B"],
        "u9": ["A", "B", "C"],
    }
    assert scores(recs, "u1") == pytest.approx(
        [math.exp(-1 / 30) + math.exp(-40 / 30), math.exp(-2 / 30), -3.0]
    )
    # padded items score -(position in the popularity ranking)
    assert scores(recs, "u9") == [-1.0, -2.0, -3.0]


def test_repurchase_pads_to_exactly_k_distinct(train: pl.DataFrame) -> None:
    recs = repurchase(train, USERS, AS_OF, 5, tau=30.0)
    assert_well_formed(recs, USERS, 5)
    got = lists(recs)
    assert got["u1"] == ["A", "B", "C", "D", "H"]  # own A, B, then popularity minus A, B
    assert got["u4"] == ["C", "D", "G", "A", "B"]


def test_k_beyond_catalog_gives_every_purchased_item_once(train: pl.DataFrame) -> None:
    for recommend in (repurchase, item_knn, ease):
        recs = recommend(train, USERS, AS_OF, 20)
        assert_well_formed(recs, USERS, len(POPULAR))
        assert lists(recs)["u9"] == POPULAR


def test_repurchase_tau_trades_frequency_for_recency(train: pl.DataFrame) -> None:
    # x bought P three times ~100 days ago and Q once yesterday.
    # tau = 10:   P = 3 e^(-10) ~ 0.0001 < Q = e^(-0.1) ~ 0.905  -> recency wins
    # tau = 1000: P = 3 e^(-0.1) ~ 2.71  > Q = e^(-0.001) ~ 0.999 -> frequency wins
    rows = [("x", "P", -100), ("x", "P", -101), ("x", "P", -102), ("x", "Q", -1)]
    extra = pl.DataFrame(
        {
            USER_ID: [r[0] for r in rows],
            ITEM_ID: [r[1] for r in rows],
            EVENT_TYPE: [PURCHASE] * 4,
            TS: [AS_OF + timedelta(days=r[2]) for r in rows],
            QUANTITY: [1] * 4,
            PRICE: [1.0] * 4,
            ORDER_ID: [None] * 4,
        },
        schema=train.schema,
    )
    events = pl.concat([train, extra])
    x = pl.Series(USER_ID, ["x"])
    assert lists(repurchase(events, x, AS_OF, 2, tau=10.0))["x"] == ["Q", "P"]
    assert lists(repurchase(events, x, AS_OF, 2, tau=1000.0))["x"] == ["P", "Q"]
    with pytest.raises(ValueError, match="tau"):
        repurchase(train, USERS, AS_OF, 3, tau=0.0)


def test_item_knn_golden(train: pl.DataFrame) -> None:
    # Binary matrix before AS_OF; buyers: A {u1 u2 u3}, B {u1 u2 u5}, C {u3 u4}, D {u4},
    # E {u2 u5}, F {u5}, G {u4}, H {u6}. Cosine = co-buyers / sqrt(n_i n_j), self = 0:
    # AB 2/3, AC 1/sqrt6, AE 1/sqrt6, BE 2/sqrt6, BF 1/sqrt3, CD 1/sqrt2, CG 1/sqrt2,
    # DG 1, EF 1/sqrt2, everything else (and all of H) 0.
    recs = item_knn(train, USERS, AS_OF, 3)
    assert_well_formed(recs, USERS, 3)
    assert lists(recs) == {
        # E: AE + BE = 1.2247; A: BA = 2/3; B: AB = 2/3 (tie -> item_id); C 0.41, F 0.58
        "u1": ["E", "A", "B"],
        # B: 2/3 + 0.8165 = 1.4832; F: 0.5774 + 0.7071 = 1.2845; E: 0.4082 + 0.8165 = 1.2247
        "u2": ["B", "F", "E"],
        # D: CD = G: CG = 0.7071 (tie -> item_id); B: AB = 0.6667
        "u3": ["D", "G", "B"],
        # D: CD + GD = 1.7071 = G; C: DC + GC = 1.4142
        "u4": ["D", "G", "C"],
        # E: BE + FE = 1.5236; B: EB + FB = 1.3938; F: BF + EF = 1.2845
        "u5": ["E", "B", "F"],
        # H shares no buyer with anything: all scores 0 -> popularity
        "u6": ["A", "B", "C"],
        "u9": ["A", "B", "C"],
    }
    assert scores(recs, "u1") == pytest.approx([3 / math.sqrt(6), 2 / 3, 2 / 3])
    assert scores(recs, "u6") == [-1.0, -2.0, -3.0]


def test_ease_golden(train: pl.DataFrame) -> None:
    recs = ease(train, USERS, AS_OF, 3, lam=1.0)
    assert_well_formed(recs, USERS, 3)
    got = lists(recs)
    # golden lists, checked against the closed form written out independently below
    assert {u: got[u] for u in ("u1", "u2", "u3", "u5", "u6", "u9")} == {
        "u1": ["A", "E", "B"],
        "u2": ["B", "A", "E"],
        "u3": ["A", "C", "B"],
        "u5": ["B", "E", "F"],
        "u6": ["A", "B", "C"],  # H is isolated: EASE scores 0 -> popularity
        "u9": ["A", "B", "C"],
    }
    # D and G have identical columns, so EASE cannot tell them apart
    assert got["u4"][0] == "C" and set(got["u4"][1:]) == {"D", "G"}

    items = sorted(POPULAR)
    known = ["u1", "u2", "u3", "u4", "u5", "u6"]
    x = np.zeros((len(known), len(items)))
    for user, item, kind, days, _ in ROWS:
        if kind == PURCHASE and days < 0:
            x[known.index(user), items.index(item)] = 1.0
    p = np.linalg.inv(x.T @ x + np.eye(len(items)))
    b = np.eye(len(items)) - p / np.diag(p)  # B_ij = -P_ij / P_jj, zero diagonal
    expected = x @ b
    for user in ("u1", "u2", "u3", "u5"):
        row = expected[known.index(user)]
        top = [items[j] for j in np.argsort(-row, kind="stable")[:3]]
        assert got[user] == top
        assert scores(recs, user) == pytest.approx(sorted(row, reverse=True)[:3])


def test_no_lookahead_and_bad_arguments(train: pl.DataFrame) -> None:
    # everything at or after AS_OF is invisible: cutting it off changes nothing
    before = train.filter(pl.col(TS) < AS_OF)
    for recommend in (popularity, repurchase, item_knn, ease):
        assert recommend(train, USERS, AS_OF, 4).equals(recommend(before, USERS, AS_OF, 4))
        with pytest.raises(ValueError, match="k must be"):
            recommend(train, USERS, AS_OF, 0)
    with pytest.raises(ValueError, match="lam"):
        ease(train, USERS, AS_OF, 3, lam=0.0)


def test_no_users_gives_no_rows(train: pl.DataFrame) -> None:
    nobody = pl.Series(USER_ID, [], dtype=pl.Utf8)
    for recommend in (popularity, repurchase, item_knn, ease):
        assert recommend(train, nobody, AS_OF, 3).height == 0


def test_best_columns_equal_a_stable_sort_with_ties() -> None:
    """The partition-based top columns give exactly a stable argsort's first columns: best
    first, equal scores in column order, ties across the cut included."""
    from tasks.baselines.recommenders import _best_columns

    by_hand = np.array([[0.5, 2.0, 0.5, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert _best_columns(by_hand, 3).tolist() == [[1, 4, 0], [0, 1, 2]]
    rng = np.random.default_rng(3)
    for top in (1, 4, 7, 12, 13):
        scores = rng.integers(-3, 4, size=(50, 12)).astype(np.float64)  # many ties
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :top]
        assert np.array_equal(_best_columns(scores, top), expected), top
    assert _best_columns(by_hand, 0).shape == (2, 0)
