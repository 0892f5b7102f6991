"""Recall ceilings and the learned first-stage merge, on hand-made frames."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.candidates.generate import MISSING_RANK as M
from tasks.candidates.generate import generate_candidates
from tasks.candidates.merge import LEARNED_RANK, MERGE_SCORE, fit_merge_model, learned_order
from tasks.candidates.recall import recall_ceiling
from tasks.settings import CandidateSettings

AS_OF = dt.datetime(2026, 3, 1)
CFG = CandidateSettings()


def _events(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    """(user, item, days before AS_OF; negative = after) purchases, one order per user-day."""
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": ["purchase"] * len(rows),
            "ts": [AS_OF - dt.timedelta(days=r[2]) for r in rows],
            "quantity": [1] * len(rows),
            "price": [1.0] * len(rows),
            "order_id": [f"{r[0]}-{r[2]}" for r in rows],
            "session_id": pl.Series([None] * len(rows), dtype=pl.Utf8),
        },
        schema_overrides={"ts": pl.Datetime("us")},
    )


def test_recall_ceiling_by_hand() -> None:
    # u1 truth {a, b, c}, u2 truth {a}; the union holds a, b for u1 (c missing) and a for u2.
    truth = pl.DataFrame(
        {"user_id": ["u1", "u1", "u1", "u2", "u3"], "item_id": ["a", "b", "c", "a", "a"]}
    )
    cands = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
            "item_id": ["a", "b", "x", "a", "y", "a"],
            "hist_rank": [1, 3, 2, M, 1, 1],
        }
    )
    table = recall_ceiling(cands, truth, pl.Series(["u1", "u2"]), ns=(1, 2, 3))
    rows = {r["ceiling"]: r for r in table.iter_rows(named=True)}
    # union: min(n, 2) for u1 + min(n, 1) for u2, over 4 truth pairs
    assert [rows["union"][f"recall@{n}"] for n in (1, 2, 3)] == [0.5, 0.75, 0.75]
    # all items: min(n, 3) + min(n, 1)
    assert [rows["all items"][f"recall@{n}"] for n in (1, 2, 3)] == [0.5, 0.75, 1.0]
    # per customer: mean of min(n, 2) / 3 (u1) and min(n, 1) / 1 (u2)
    union = [rows["union"][f"user_recall@{n}"] for n in (1, 2, 3)]
    assert union == pytest.approx([(1 / 3 + 1) / 2, (2 / 3 + 1) / 2, (2 / 3 + 1) / 2])
    every = [rows["all items"][f"user_recall@{n}"] for n in (1, 2, 3)]
    assert every == pytest.approx([(1 / 3 + 1) / 2, (2 / 3 + 1) / 2, 1.0])


def _staple_shop(future: bool = False) -> pl.DataFrame:
    """120 customers: each bought its staple s<u%10> on days 100, 70 and 45 before AS_OF and a
    one-off o<u%7> on day 80; inside [AS_OF - 30, AS_OF) each re-bought only its staple.
    With `future`, each also buys its one-off after AS_OF (must change nothing)."""
    rows: list[tuple[str, str, int]] = []
    for n in range(120):
        user, staple, once = f"u{n:03d}", f"s{n % 10}", f"o{n % 7}"
        rows += [(user, staple, d) for d in (100, 70, 45, 10)] + [(user, once, 80)]
        if future:
            rows.append((user, once, -3))
    return _events(rows)


def test_learned_merge_puts_the_rebought_staple_first() -> None:
    events = _staple_shop()
    booster = fit_merge_model(events, AS_OF, CFG, lag_days=30, rounds=20)
    assert booster is not None
    users = pl.Series([f"u{n:03d}" for n in range(120)])
    union = generate_candidates(events, users, AS_OF, CFG)
    ordered = learned_order(events, union, AS_OF, booster)
    top = ordered.filter(pl.col(LEARNED_RANK) == 1)
    assert top.height == 120
    assert top.select(
        (
            pl.col("item_id")
            == "s" + (pl.col("user_id").str.slice(1).cast(pl.Int32) % 10).cast(pl.Utf8)
        ).all()
    ).item()
    # the fused order and every source column are kept as they were
    assert_frame_equal(ordered.drop(MERGE_SCORE, LEARNED_RANK).sort("user_id", "item_id"), union)


def test_learned_merge_is_point_in_time() -> None:
    users = pl.Series([f"u{n:03d}" for n in range(120)])
    orders = []
    for events in (_staple_shop(), _staple_shop(future=True)):
        booster = fit_merge_model(events, AS_OF, CFG, lag_days=30, rounds=20)
        assert booster is not None
        past = events.filter(pl.col("ts") < AS_OF)
        union = generate_candidates(past, users, AS_OF, CFG)
        # the full frame on purpose: the merge features must cut it at AS_OF themselves
        orders.append(learned_order(events, union, AS_OF, booster))
    assert_frame_equal(orders[0], orders[1])


def test_learned_merge_needs_positives_in_the_earlier_window() -> None:
    # nobody bought anything in [AS_OF - 30, AS_OF): no customer to learn from
    events = _events([(f"u{n}", "x", 60) for n in range(10)])
    assert fit_merge_model(events, AS_OF, CFG, lag_days=30) is None
