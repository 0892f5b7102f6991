"""Candidate sources stay within memory whatever the catalog (issue 13, "any real shop").

EASE works on at most the items its budget admits, chosen as the most-bought; when it has
to cut, it logs and reports it. The co-purchase self-join and item-kNN are bounded too.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.baselines.recommenders import (
    ease,
    ease_item_budget,
    ease_scope,
    item_knn,
    most_bought_items,
)
from tasks.candidates.generate import (
    CandidateReport,
    copurchase_candidates,
    ease_candidates,
    fit_ease_source,
    generate_candidates,
    history_candidates,
    item_neighbors,
    popular_items,
)
from tasks.constants import EVENT_TYPE, ITEM_ID, PURCHASE, RANK, SCORE, TS, USER_ID
from tasks.features.build import feature_columns
from tasks.rank import lgbm, train
from tasks.rank.dataset import LABEL, candidate_frame
from tasks.schema import EVENTS_SCHEMA
from tasks.settings import CandidateSettings, load_settings
from tasks.synth.shop import SynthShopConfig, generate_shop

AS_OF = dt.datetime(2024, 3, 1)
DAY = dt.timedelta(days=1)


def _events(rows: list[tuple[str, str, int, str]]) -> pl.DataFrame:
    """(user, item, days before AS_OF, order) purchase lines."""
    return pl.DataFrame(
        {
            USER_ID: [r[0] for r in rows],
            ITEM_ID: [r[1] for r in rows],
            EVENT_TYPE: [PURCHASE] * len(rows),
            TS: [AS_OF - r[2] * DAY for r in rows],
            "quantity": [1] * len(rows),
            "price": [1.0] * len(rows),
            "order_id": [r[3] for r in rows],
            "session_id": [None] * len(rows),
        },
        schema=EVENTS_SCHEMA,
    )


# Distinct buyers in the last 90 days: a 5, b 4, c 3, d 3, e 2, f 1 (d's c-tie: all-time
# buyers, then id), g only bought long ago (0 recent buyers, 2 all-time).
_BUYS = {
    "a": ["u1", "u2", "u3", "u4", "u5"],
    "b": ["u1", "u2", "u3", "u4"],
    "c": ["u2", "u3", "u5"],
    "d": ["u1", "u4", "u5"],
    "e": ["u1", "u3"],
    "f": ["u2"],
}
FIXTURE = _events(
    [(u, item, 3 + i, f"{u}-{3 + i}") for item, us in _BUYS.items() for i, u in enumerate(us)]
    + [("u1", "g", 200, "u1-old"), ("u3", "g", 150, "u3-old"), ("u5", "c", 120, "u5-old")]
)
USERS = pl.Series(["u1", "u2", "u3", "u4", "u5"])


def test_budget_admits_online_retail_whole() -> None:
    # 3 dense float64 N x N in 512 MiB: Online Retail's ~3.7k items fit, its figures stay.
    assert ease_item_budget(512) == 4729
    assert ease_item_budget(1024) == 6688
    assert ease_item_budget(CandidateSettings().ease_memory_mib) >= 4_000
    assert ease_item_budget(1024, max_items=100) == 100
    assert ease_item_budget(1) == 209  # sqrt(2^20 / 24)


def test_most_bought_items_order() -> None:
    purchases = FIXTURE
    # c and d tie on 3 recent buyers; c has 4 buyers all-time (u5's old line counts once:
    # u5 is already a recent buyer), d 3: c first; then e; f and g trail.
    got = most_bought_items(purchases, AS_OF, 7, 90).to_list()
    assert got == ["a", "b", "c", "d", "e", "f", "g"]
    assert most_bought_items(purchases, AS_OF, 3, 90).to_list() == ["a", "b", "c"]


def test_ease_under_budget_picks_top_n_and_equals_restricted_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = CandidateSettings(ease_max_items=4, ease_per_user=10)
    scope = ease_scope(FIXTURE, AS_OF, max_items=4)
    assert set(scope.items.to_list()) == {"a", "b", "c", "d"}
    assert (scope.n_items, scope.bought) == (4, 7)

    report = CandidateReport()
    with caplog.at_level(logging.WARNING, logger="nightrec.candidates"):
        bounded = ease_candidates(
            FIXTURE, USERS, AS_OF, cfg, fit_ease_source(FIXTURE, AS_OF, cfg, report)
        )
    assert "EASE on the 4 most-bought of 7 items (budget 512 MiB)" in caplog.text
    assert report.notes == {"ease": "EASE on the 4 most-bought of 7 items (budget 512 MiB)"}
    assert (report.ease_items, report.catalog_items) == (4, 7)

    restricted = FIXTURE.filter(pl.col(ITEM_ID).is_in(["a", "b", "c", "d"]))
    whole_cfg = cfg.model_copy(update={"ease_max_items": 0})
    whole = ease_candidates(
        restricted, USERS, AS_OF, whole_cfg, fit_ease_source(restricted, AS_OF, whole_cfg)
    )
    assert bounded.height > 0
    assert set(bounded.get_column(ITEM_ID).to_list()) <= {"a", "b", "c", "d"}
    assert_frame_equal(bounded, whole, check_exact=True)


def test_ease_fits_unbounded_equals_the_closed_form() -> None:
    """Within the budget EASE is today's closed form over every purchased item."""
    lam = 1.0
    recs = ease(FIXTURE, USERS, AS_OF, 3, lam=lam)
    items = sorted(set(FIXTURE.get_column(ITEM_ID).to_list()))
    users = USERS.sort().to_list()
    x = np.zeros((len(users), len(items)))
    for u, i in FIXTURE.select(USER_ID, ITEM_ID).unique().iter_rows():
        x[users.index(u), items.index(i)] = 1.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(len(items)))
    b = p / -np.diag(p)[np.newaxis, :]
    np.fill_diagonal(b, 0.0)
    scores = x @ b
    for row, user in enumerate(users):
        order = np.argsort(-scores[row], kind="stable")
        expected = [(items[c], scores[row, c]) for c in order if scores[row, c] > 0][:3]
        got = recs.filter((pl.col(USER_ID) == user) & (pl.col(SCORE) > 0)).sort(RANK)
        assert got.get_column(ITEM_ID).to_list() == [e[0] for e in expected]
        assert got.get_column(SCORE).to_list() == pytest.approx([e[1] for e in expected], 1e-12)
    report = CandidateReport()
    generate_candidates(FIXTURE, USERS, AS_OF, CandidateSettings(), report)
    assert report.notes == {} and not report.degraded
    assert (report.ease_items, report.catalog_items) == (7, 7)


def test_copurchase_slices_equal_one_join() -> None:
    cfg = CandidateSettings()
    purchases = FIXTURE
    whole = item_neighbors(purchases, AS_OF, cfg)
    sliced = item_neighbors(purchases, AS_OF, cfg.model_copy(update={"copurchase_max_pairs": 1}))
    assert whole.height > 0
    assert_frame_equal(whole, sliced)
    assert_frame_equal(
        copurchase_candidates(FIXTURE, AS_OF, cfg, USERS),
        copurchase_candidates(
            FIXTURE, AS_OF, cfg.model_copy(update={"copurchase_max_pairs": 3}), USERS
        ),
    )


def test_item_knn_bounded_by_pairs(caplog: pytest.LogCaptureFixture) -> None:
    whole = item_knn(FIXTURE, USERS, AS_OF, 3)
    assert_frame_equal(whole, item_knn(FIXTURE, USERS, AS_OF, 3, max_pairs=10**6))
    with caplog.at_level(logging.WARNING, logger="nightrec.candidates"):
        bounded = item_knn(FIXTURE, USERS, AS_OF, 3, max_pairs=40)
    assert "item-kNN on the 3 most-bought of 7 items" in caplog.text
    own = bounded.filter(pl.col(SCORE) > 0)
    assert set(own.get_column(ITEM_ID).to_list()) <= {"a", "b", "c"}


def _large_shop(n_items: int, n_users: int, seed: int = 3) -> pl.DataFrame:
    """Every item bought at least once, plus Zipf-popular baskets of 10-30 lines."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    cdf = np.cumsum(pop / pop.sum())
    users, items, days, orders = [], [], [], []
    for u in range(n_users):
        for trip in range(12):
            size = int(rng.integers(10, 31))
            basket = np.unique(np.minimum(np.searchsorted(cdf, rng.random(size)), n_items - 1))
            users += [u] * basket.size
            items += basket.tolist()
            days += [1 + 7 * trip] * basket.size
            orders += [u * 100 + trip] * basket.size
    tail = np.arange(n_items)  # the long tail: each item once, spread over the users
    users += (tail % n_users).tolist()
    items += tail.tolist()
    days += (100 + tail % 50).tolist()
    orders += (10**7 + tail // 20).tolist()
    n = len(users)
    return pl.DataFrame(
        {
            USER_ID: pl.Series(users).cast(pl.Utf8),
            ITEM_ID: "i" + pl.Series(items).cast(pl.Utf8),
            EVENT_TYPE: [PURCHASE] * n,
            TS: pl.Series([AS_OF - d * DAY for d in days]),
            "quantity": [1] * n,
            "price": [1.0] * n,
            "order_id": pl.Series(orders).cast(pl.Utf8),
            "session_id": pl.Series([None] * n, dtype=pl.Utf8),
        },
        schema=EVENTS_SCHEMA,
    )


def test_large_catalog_runs_every_source_within_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = _large_shop(60_000, 400)
    bought = events.get_column(ITEM_ID).n_unique()
    assert bought == 60_000
    cfg = CandidateSettings()
    users = events.get_column(USER_ID).unique().sort().head(50)
    limit = ease_item_budget(cfg.ease_memory_mib, cfg.ease_max_items)
    report = CandidateReport()
    with caplog.at_level(logging.WARNING, logger="nightrec.candidates"):
        cands = generate_candidates(events, users, AS_OF, cfg, report)
    assert report.ease_items == limit < bought
    assert report.catalog_items == bought
    note = f"EASE on the {limit} most-bought of {bought} items (budget {cfg.ease_memory_mib} MiB)"
    assert report.notes == {"ease": note}
    assert note in caplog.text
    # every source contributed, and EASE only from its chosen items
    for source in ("hist", "covis", "ease", "pop"):
        assert (cands.get_column(f"{source}_rank") < 9_999).any(), source
    chosen = set(ease_scope(events, AS_OF).items.to_list())
    ease_items = cands.filter(pl.col("ease_rank") < 9_999).get_column(ITEM_ID)
    assert set(ease_items.to_list()) <= chosen
    assert cands.group_by(USER_ID).len().get_column("len").max() <= cfg.max_per_user
    assert history_candidates(events, AS_OF, cfg).height > 0
    assert popular_items(events, AS_OF, cfg.popular_days, 5).height == 5


def test_candidate_frame_passes_the_report_on() -> None:
    catalog = pl.DataFrame(
        {
            ITEM_ID: list("abcdefg"),
            "title": list("abcdefg"),
            "category": ["x"] * 7,
            "price": [1.0] * 7,
        }
    )
    report = CandidateReport()
    frame = candidate_frame(
        FIXTURE, catalog, USERS, AS_OF, CandidateSettings(ease_max_items=4), report
    )
    assert frame.height > 0
    assert report.notes == {"ease": "EASE on the 4 most-bought of 7 items (budget 512 MiB)"}


def test_validation_reuses_the_newest_window_with_the_same_result() -> None:
    """The validation report read from the kept window frame equals one built afresh."""
    shop = generate_shop(SynthShopConfig(n_customers=60, n_items=30, n_categories=3, days=50))
    as_of = dt.datetime.combine(shop.config.start + dt.timedelta(days=50), dt.time())
    base = load_settings(horizon_days=7, k=5)
    settings = base.model_copy(
        update={
            "ranker": base.ranker.model_copy(
                update={"n_windows": 3, "window_step_days": 7, "min_data_in_leaf": 5}
            )
        }
    )
    events = shop.events.filter(pl.col(TS) < as_of)
    windows = train.training_windows(events, shop.catalog, as_of, settings)
    frames = windows.frames
    features = feature_columns(frames[0].drop(LABEL))
    fit = lgbm.fit(train.keyed(frames[1:]), features, settings.ranker, 1)
    reused = train._validation_report(
        fit.booster, events, shop.catalog, windows, settings, features
    )
    assert windows.newest_candidates is None  # handed out once, then dropped
    # Built afresh: the same windows with nothing left to reuse.
    fresh = train._validation_report(fit.booster, events, shop.catalog, windows, settings, features)
    assert reused == fresh
    assert reused["users"] > 0
