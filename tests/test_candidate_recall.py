"""Candidate recall and the retrieval sources on tiny hand-made frames, values by hand."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tasks.candidates.generate import (
    MISSING_RANK,
    SOURCES,
    ease_candidates,
    fit_ease_source,
    generate_candidates,
    history_candidates,
)
from tasks.candidates.recall import candidate_recall
from tasks.settings import CandidateSettings

AS_OF = dt.datetime(2026, 3, 1)
M = MISSING_RANK


def _events(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    """(user, item, days before AS_OF) purchases, one order per user and day."""
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


def test_candidate_recall_by_hand() -> None:
    # u1 truth {a, b, c}, u2 truth {a}; u3 has truth but is not evaluated.
    truth = pl.DataFrame(
        {"user_id": ["u1", "u1", "u1", "u2", "u3"], "item_id": ["a", "b", "c", "a", "a"]}
    )
    cands = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2", "u2", "u3"],
            "item_id": ["a", "b", "x", "c", "a", "y", "a"],
            "hist_rank": [1, 3, 2, M, M, 1, 1],
            "pop_rank": [2, M, 1, 3, 1, 2, 1],
            "merged_rank": [1, 3, 2, 4, 1, 2, 1],
        }
    )
    table = candidate_recall(cands, truth, pl.Series(["u1", "u2"]), ns=(1, 2, 3))
    rows = {r["source"]: r for r in table.iter_rows(named=True)}
    assert list(rows) == ["hist", "pop", "merged"]
    assert all(r["truth"] == 4 and r["users"] == 2 for r in rows.values())
    # hist: u1 a@1, b@3; u2 nothing relevant (y only)
    assert [rows["hist"][f"recall@{n}"] for n in (1, 2, 3)] == [0.25, 0.25, 0.5]
    assert rows["hist"]["recall@all"] == 0.5
    assert rows["hist"]["candidates_per_user"] == 2.0  # u1: a, b, x; u2: y
    # pop: u1 x@1, a@2, c@3; u2 a@1
    assert [rows["pop"][f"recall@{n}"] for n in (1, 2, 3)] == [0.25, 0.5, 0.75]
    assert rows["pop"]["candidates_per_user"] == 2.5
    # merged: u1 a@1, x@2, b@3, c@4; u2 a@1
    assert [rows["merged"][f"recall@{n}"] for n in (1, 2, 3)] == [0.5, 0.5, 0.75]
    assert rows["merged"]["recall@all"] == 1.0
    # The protocol's per-customer recall: mean over u1, u2 of hits / |truth|.
    # hist: u1 1/3, 1/3, 2/3; u2 0.  pop: u1 0, 1/3, 2/3; u2 1.  merged: u1 1/3, 1/3, 2/3; u2 1.
    user = {s: [rows[s][f"user_recall@{n}"] for n in (1, 2, 3)] for s in rows}
    assert user["hist"] == pytest.approx([1 / 6, 1 / 6, 1 / 3])
    assert user["pop"] == pytest.approx([1 / 2, 2 / 3, 5 / 6])
    assert user["merged"] == pytest.approx([2 / 3, 2 / 3, 5 / 6])


def test_history_keeps_the_full_history_by_default() -> None:
    events = _events([("u1", f"i{n:03d}", n) for n in range(1, 151)])
    hist = history_candidates(events, AS_OF, CandidateSettings())
    assert hist.height == 150
    assert hist.sort("hist_rank").get_column("item_id").head(2).to_list() == ["i001", "i002"]


def test_ease_source_matches_the_closed_form_by_hand() -> None:
    # X'X over items (x, y) = [[3, 2], [2, 2]]; + lambda 1 -> P = [[3, -2], [-2, 4]] / 8,
    # B = -P / diag(P) with zero diagonal: B[x, y] = 1/2, B[y, x] = 2/3.
    events = _events([("a", "x", 5), ("a", "y", 5), ("b", "x", 4), ("b", "y", 4), ("c", "x", 3)])
    cfg = CandidateSettings(ease_lambda=1.0, ease_per_user=5)
    fit = fit_ease_source(events, AS_OF, cfg)
    got = ease_candidates(events, pl.Series(["a", "c"]), AS_OF, cfg, fit)
    got = got.sort("user_id", "ease_rank")
    assert got.select("user_id", "item_id", "ease_rank").rows() == [
        ("a", "x", 1),
        ("a", "y", 2),
        ("c", "y", 1),  # x scores 0 for c (only its own vote, the diagonal) and is dropped
    ]
    assert got.get_column("ease_score").to_list() == pytest.approx([2 / 3, 1 / 2, 1 / 2])
    assert (
        ease_candidates(
            events,
            pl.Series(["a"]),
            AS_OF,
            cfg,
            fit_ease_source(events, AS_OF, cfg.model_copy(update={"ease_per_user": 0})),
        ).height
        == 0
    )


def test_merged_rank_is_weighted_reciprocal_rank_fusion_and_caps_the_list() -> None:
    events = _events([("a", "x", 5), ("a", "y", 5), ("b", "x", 4), ("b", "y", 4), ("c", "x", 3)])
    cfg = CandidateSettings(
        ease_lambda=1.0,
        popular_per_user=2,
        rrf_k=0.0,
        merge_weight_hist=1.0,
        merge_weight_covis=0.0,
        merge_weight_ease=1.0,
        merge_weight_pop=0.25,
    )
    cands = generate_candidates(events, pl.Series(["c"]), AS_OF, cfg)
    assert set(cands.columns) >= {f"{s}_{c}" for s in SOURCES for c in ("score", "rank")}
    by_item = {r["item_id"]: r for r in cands.iter_rows(named=True)}
    # x: hist 1, pop 1 (3 buyers)  -> 1 + 0.25 / 1 = 1.25
    # y: ease 1, covis 1, pop 2    -> 1 + 0 + 0.25 / 2 = 1.125
    assert (by_item["x"]["hist_rank"], by_item["x"]["ease_rank"], by_item["x"]["pop_rank"]) == (
        1,
        M,
        1,
    )
    assert (by_item["y"]["hist_rank"], by_item["y"]["ease_rank"], by_item["y"]["pop_rank"]) == (
        M,
        1,
        2,
    )
    assert (by_item["x"]["merged_rank"], by_item["y"]["merged_rank"]) == (1, 2)
    assert (by_item["x"]["n_sources"], by_item["y"]["n_sources"]) == (2, 3)
    capped = generate_candidates(
        events, pl.Series(["c"]), AS_OF, cfg.model_copy(update={"max_per_user": 1})
    )
    assert capped.select("item_id", "merged_rank").rows() == [("x", 1)]
