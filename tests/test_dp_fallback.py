"""The popularity fallback with differentially private counts (tasks/candidates/dp_popular)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from tasks.candidates.dp_popular import (
    dp_popular_items,
    dp_seed,
    fallback_popular,
    two_sided_geometric,
)
from tasks.candidates.generate import popular_items
from tasks.settings import Settings, load_settings

AS_OF = dt.datetime(2026, 3, 1)


def _events() -> pl.DataFrame:
    """Item a: 4 buyers, b: 3, c: 2, d: 1 (all in the last 30 days); u1 also bought e..h long
    before (outside the window); u5 bought a, b, c, d in that order."""
    rows = []
    day = AS_OF - dt.timedelta(days=10)
    for user, items in {"u1": "abcd", "u2": "abc", "u3": "ab", "u4": "a"}.items():
        rows += [(user, item, day) for item in items]
    rows += [("u1", item, AS_OF - dt.timedelta(days=90)) for item in "efgh"]
    rows += [("u5", item, AS_OF - dt.timedelta(days=5 - n)) for n, item in enumerate("abcd")]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "ts"], orient="row").with_columns(
        pl.lit("purchase").alias("event_type"), pl.col("ts").cast(pl.Datetime("us"))
    )


DOMAIN = pl.Series(list("abcdefghij"))


def _counts(frame: pl.DataFrame) -> dict[str, float]:
    return dict(zip(frame["item_id"], frame["pop_score"], strict=True))


def test_contributions_are_capped_to_each_customers_most_recent_items() -> None:
    # epsilon so large that the noise is 0: the counts are the capped exact counts.
    exact = dp_popular_items(_events(), AS_OF, 30, 10, DOMAIN, 1e12, 2, dp_seed(1, AS_OF))
    # u1: a, b (ties by id); u2: a, b; u3: a, b; u4: a; u5: d, c (its two latest)
    assert _counts(exact) == {
        "a": 4.0, "b": 3.0, "c": 1.0, "d": 1.0,
        "e": 0.0, "f": 0.0, "g": 0.0, "h": 0.0, "i": 0.0, "j": 0.0,
    }  # fmt: skip
    assert exact.get_column("pop_rank").to_list() == list(range(1, 11))


def test_dp_counts_differ_from_exact_and_repeat_with_the_same_seed() -> None:
    events = _events()
    noisy = dp_popular_items(events, AS_OF, 30, 10, DOMAIN, 1.0, 4, dp_seed(7, AS_OF))
    again = dp_popular_items(events, AS_OF, 30, 10, DOMAIN, 1.0, 4, dp_seed(7, AS_OF))
    exact = dp_popular_items(events, AS_OF, 30, 10, DOMAIN, 1e12, 4, dp_seed(7, AS_OF))
    assert noisy.equals(again)
    assert _counts(noisy) != _counts(exact)
    assert all(float(v).is_integer() for v in noisy["pop_score"])  # integer (geometric) noise
    other_seed = dp_popular_items(events, AS_OF, 30, 10, DOMAIN, 1.0, 4, dp_seed(8, AS_OF))
    next_day = AS_OF + dt.timedelta(days=1)
    other_day = dp_popular_items(events, AS_OF, 30, 10, DOMAIN, 1.0, 4, dp_seed(7, next_day))
    assert _counts(other_seed) != _counts(noisy) and _counts(other_day) != _counts(noisy)


def test_the_noise_has_the_discrete_laplace_variance() -> None:
    rng = np.random.Generator(np.random.PCG64(3))
    noise = two_sided_geometric(200_000, epsilon=1.0, sensitivity=2, rng=rng)
    alpha = np.exp(-1.0 / 2)
    assert noise.mean() == pytest.approx(0.0, abs=0.03)
    assert noise.var() == pytest.approx(2 * alpha / (1 - alpha) ** 2, rel=0.03)


def test_fallback_list_is_exact_unless_epsilon_is_set(tmp_path) -> None:
    events = _events()
    exact_settings = load_settings(home=tmp_path, k=2)
    exact = fallback_popular(events, AS_OF, exact_settings, DOMAIN)
    assert exact.to_list() == popular_items(events, AS_OF, 30, 4).get_column("item_id").to_list()
    assert exact.to_list() == ["a", "b", "c", "d"]
    allowed = pl.Series(["b", "c", "d", "e"])
    assert fallback_popular(events, AS_OF, exact_settings, DOMAIN, allowed).to_list() == [
        "b",
        "c",
        "d",
    ]

    private = load_settings(home=tmp_path, k=2, fallback={"dp_epsilon": 0.5, "dp_seed": 11})
    first = fallback_popular(events, AS_OF, private, DOMAIN)
    assert first.to_list() == fallback_popular(events, AS_OF, private, DOMAIN).to_list()
    assert first.len() == 4 and set(first) <= set(DOMAIN)

    # Twenty seeds: the noisy list is not always the exact one, and never-bought items of the
    # domain can enter it (the domain is noised whole).
    def seeded(seed: int) -> Settings:
        return private.model_copy(
            update={"fallback": private.fallback.model_copy(update={"dp_seed": seed})}
        )

    lists = [fallback_popular(events, AS_OF, seeded(s), DOMAIN).to_list() for s in range(20)]
    assert any(items != exact.to_list() for items in lists)
    assert any(set(items) & set("efghij") for items in lists)
    restricted = fallback_popular(events, AS_OF, private, DOMAIN, allowed)
    assert set(restricted) <= set(allowed) and restricted.len() == 4


def test_a_run_without_a_model_pads_with_the_private_list_and_says_so(tmp_path) -> None:
    from tasks.features.snapshot import Snapshot
    from tasks.rank.task import BASELINE_VERSION, ModelChoice, score_users

    events = _events().with_columns(
        pl.lit(1).alias("quantity"), pl.lit(1.0).alias("price"), pl.lit(None).alias("order_id")
    )
    events.write_parquet(tmp_path / "events.parquet")
    pl.DataFrame({"item_id": DOMAIN}).write_parquet(tmp_path / "catalog.parquet")
    snapshot = Snapshot(
        tmp_path / "events.parquet", tmp_path / "catalog.parquet", AS_OF, events.height, None
    )
    settings = load_settings(home=tmp_path, k=3, fallback={"dp_epsilon": 1.0, "dp_seed": 5})
    choice = ModelChoice(None, False, "no model", problem="no model trained yet")
    outcome = score_users(settings, snapshot, choice, tmp_path, tmp_path / "report.json")
    assert outcome.model_version == BASELINE_VERSION
    assert outcome.notes == (
        "popularity fallback: differentially private counts (epsilon 1, at most 5 items per "
        "customer)",
    )
    recs = pl.read_parquet(outcome.recs_path)
    padded = recs.filter(pl.col("source") == "popularity_fallback")
    assert padded.height > 0  # u4 bought one item: two places padded
    assert set(padded.get_column("reason_detail")) == {
        "one of the most bought items lately (differentially private counts, epsilon 1): "
        "no model could serve tonight"
    }
    # The padding follows the private list of this run (same seed, same as-of: same list).
    private = fallback_popular(_events(), AS_OF, settings, DOMAIN, DOMAIN).to_list()
    for user, items in padded.group_by("user_id", maintain_order=True).agg("item_id").iter_rows():
        own = set(
            recs.filter(pl.col("user_id") == user, pl.col("source") != "popularity_fallback")[
                "item_id"
            ]
        )
        assert items == [i for i in private if i not in own][: len(items)]
