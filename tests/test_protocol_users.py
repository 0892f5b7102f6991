"""The protocol's user set (DESIGN.md, "Evaluation protocol"): every customer with an order
line before T and one in [T, T + H), fee lines included; the adapter's activity lines, the
landing reader, and a backtest that counts every such customer, served or not."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from tasks.candidates.recall import per_customer_recall, recall_ceiling
from tasks.constants import EVENT_TYPE, ITEM_ID, PURCHASE, TS, USER_ID, VIEW
from tasks.ingest.activity import ActivityMismatch, check_covers, order_lines
from tasks.ingest.adapters import AdaptedFile, OnlineRetailAdapter
from tasks.ingest.load import _without_erased
from tasks.protocol.split import evaluated_users, protocol_users, truth_window
from tasks.validate.contracts import ROW_INDEX

T = dt.datetime(2011, 9, 1)
H = 30


def lines(rows: list[tuple[str, dt.datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {USER_ID: [u for u, _ in rows], TS: [t for _, t in rows]},
        schema={USER_ID: pl.Utf8, TS: pl.Datetime("us")},
    )


def test_protocol_users_hand_computed() -> None:
    day = dt.timedelta(days=1)
    frame = lines(
        [
            ("a", T - day),  # before and inside: in
            ("a", T + day),
            ("b", T - 5 * day),  # no line in the window: out
            ("c", T - day),  # only a fee line in the window (lines do not say): in
            ("c", T + 2 * day),
            ("d", T - 40 * day),  # only a fee line before: in
            ("d", T + 3 * day),
            ("e", T - dt.timedelta(microseconds=1)),  # just before T and exactly at T: in
            ("e", T),
            ("f", T + day),  # cold: nothing before T: out
            ("g", T - day),  # the window ends before T + H: out
            ("g", T + dt.timedelta(days=H)),
        ]
    )
    assert protocol_users(frame, T, H).to_list() == ["a", "c", "d", "e"]
    assert protocol_users(frame.head(0), T, H).to_list() == []
    with pytest.raises(ValueError, match="horizon_days must be positive"):
        protocol_users(frame, T, 0)


def test_purchase_events_alone_drop_the_fee_line_customers() -> None:
    """The same shop as loaded (fee lines are no events): c's window and d's history are
    gone, so the purchase events alone find 2 of the protocol's 4 customers."""
    day = dt.timedelta(days=1)
    rows = [
        ("a", "1", T - day),
        ("a", "2", T + day),
        ("c", "1", T - day),
        ("d", "3", T + 3 * day),
        ("e", "1", T - day),
        ("e", "3", T),
    ]
    events = pl.DataFrame(
        {
            USER_ID: [u for u, _, _ in rows],
            ITEM_ID: [i for _, i, _ in rows],
            EVENT_TYPE: [PURCHASE] * len(rows),
            TS: [t for _, _, t in rows],
        }
    )
    fees = lines([("c", T + 2 * day), ("d", T - 40 * day)])
    all_lines = pl.concat([events.select(USER_ID, TS), fees])
    assert evaluated_users(events, T, H).to_list() == ["a", "e"]
    assert protocol_users(all_lines, T, H).to_list() == ["a", "c", "d", "e"]
    # c has no item in the window: an empty truth; d's truth is there
    truth = truth_window(events, T, H)
    assert truth.rows() == [("a", "2"), ("d", "3"), ("e", "3")]


RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
RETAIL_ROWS = [
    "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
    "536381,POST,POSTAGE,1,2010-12-01 09:50:00,18.00,12583.0,France",
    "536382,M,MANUAL,1,2010-12-01 09:51:00,5.00,12584.0,France",
    "C536383,POST,POSTAGE,-1,2010-12-01 09:52:00,18.00,12585.0,France",  # a cancellation
    "536384,POST,POSTAGE,1,2010-12-01 09:53:00,18.00,,France",  # no customer
    "536385,POST,POSTAGE,0,2010-12-01 09:54:00,18.00,12586.0,France",  # no quantity
    "536386,BANK CHARGES,BANK CHARGES,1,2010-12-01 09:55:00,0.0,12587.0,France",  # no price
    "536387,22423,REGENCY CAKESTAND,0,2010-12-01 09:56:00,12.75,12588.0,France",
]


def raw_frame(rows: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        [dict(zip(RETAIL_HEADER.split(","), row.split(","), strict=True)) for row in rows]
    ).with_columns(pl.all().replace("", None))


def test_online_retail_fee_lines_of_real_orders_are_activity() -> None:
    adapted = OnlineRetailAdapter().adapt(raw_frame(RETAIL_ROWS))
    assert adapted.events.get_column(USER_ID).to_list() == ["17850"]
    assert adapted.activity.rows() == [
        (1, "12583", dt.datetime(2010, 12, 1, 9, 50)),
        (2, "12584", dt.datetime(2010, 12, 1, 9, 51)),
    ]
    # activity rows stay filtered (row accounting is unchanged)
    assert adapted.filtered["non_product_code"] == 4


def test_erased_customers_fee_lines_are_no_activity() -> None:
    adapted = OnlineRetailAdapter().adapt(raw_frame(RETAIL_ROWS))
    erased = pl.Series([False, True] + [False] * (len(RETAIL_ROWS) - 2))
    kept = _without_erased(adapted, erased)
    assert kept.activity.get_column(USER_ID).to_list() == ["12584"]
    assert kept.events.height == 1  # 17850 untouched
    empty = AdaptedFile(
        events=adapted.events.head(0), rejected=adapted.rejected.head(0), filtered={}
    )
    assert empty.activity.columns == [ROW_INDEX, USER_ID, TS]


def test_order_lines_read_every_day_file_and_must_cover_the_store(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "2010-12-01.csv").write_text("\n".join([RETAIL_HEADER, *RETAIL_ROWS]) + "\n")
    (landing / "2010-12-02.csv").write_text(
        RETAIL_HEADER + "\n536390,POST,POSTAGE,1,2010-12-02 10:00:00,18.00,17850.0,UK\n"
    )
    found = order_lines("online-retail", landing).sort(TS)
    assert found.rows() == [
        ("17850", dt.datetime(2010, 12, 1, 8, 26)),
        ("12583", dt.datetime(2010, 12, 1, 9, 50)),
        ("12584", dt.datetime(2010, 12, 1, 9, 51)),
        ("17850", dt.datetime(2010, 12, 2, 10, 0)),
    ]
    assert order_lines("online-retail", landing, start=dt.date(2010, 12, 2)).height == 1
    store = pl.DataFrame({USER_ID: ["17850", "99999"], EVENT_TYPE: [PURCHASE, PURCHASE]})
    with pytest.raises(ActivityMismatch, match=r"1 customer\(s\) with purchases in the store"):
        check_covers(found, store)
    check_covers(found, store.head(1))
    # A customer who only viewed has no order line to find: the files still cover the store.
    check_covers(found, store.with_columns(pl.lit(VIEW).alias(EVENT_TYPE)))


def test_per_customer_recall_counts_unserved_and_empty_truth_customers_as_zero() -> None:
    truth = pl.DataFrame({USER_ID: ["a", "a", "b", "d"], ITEM_ID: ["1", "2", "1", "9"]})
    # a finds 1 of 2, b finds its 1, c has no truth, d has no candidates (unserved)
    candidates = pl.DataFrame(
        {USER_ID: ["a", "a", "b", "c"], ITEM_ID: ["1", "3", "1", "1"]},
    ).with_columns(pl.lit(1).alias("merged_rank"))
    users = ["a", "b", "c", "d"]
    assert per_customer_recall(candidates, truth, users) == pytest.approx((0.5 + 1) / 4)
    ceiling = recall_ceiling(candidates, truth, users, (1, 2))
    union = ceiling.filter(pl.col("ceiling") == "union").row(0, named=True)
    assert union["user_recall@1"] == pytest.approx((0.5 + 1) / 4)
    everything = ceiling.filter(pl.col("ceiling") == "all items").row(0, named=True)
    # a perfect order of the whole catalog: a 1/2 at N = 1, all of a at N = 2; c stays 0
    assert everything["user_recall@1"] == pytest.approx((0.5 + 1 + 1) / 4)
    assert everything["user_recall@2"] == pytest.approx(3 / 4)


SHOP_DAYS = 45


@pytest.fixture
def tiny_settings(home: Path, monkeypatch: pytest.MonkeyPatch):
    from tasks.settings import load_settings

    for name, value in {
        "NIGHTREC_HOME": str(home),
        "NIGHTREC_K": "5",
        "NIGHTREC_HORIZON_DAYS": "7",
        "NIGHTREC_RANKER__N_WINDOWS": "3",
        "NIGHTREC_RANKER__WINDOW_STEP_DAYS": "7",
        "NIGHTREC_RANKER__MIN_DATA_IN_LEAF": "5",
        "NIGHTREC_RANKER__NUM_THREADS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_backtest_counts_every_protocol_customer_served_or_not(tiny_settings) -> None:
    """Two customers the purchase events alone would drop: `zz-new` (only a fee line before
    T, an item in the window: the run publishes nothing for them) and an existing customer
    whose window holds only a fee line (empty truth). Both count with zeros for the model,
    so its mean NDCG@10 over the protocol's users is the mean over the others times n/(n+2),
    with the same trained model."""
    from tasks.evaluate.backtest import run_backtest
    from tasks.synth.shop import SynthShopConfig, generate_shop

    shop = generate_shop(
        SynthShopConfig(n_customers=40, n_items=30, n_categories=4, days=SHOP_DAYS, seed=3)
    )
    as_of = dt.datetime.combine(shop.config.start + dt.timedelta(days=SHOP_DAYS - 8), dt.time())
    h = tiny_settings.horizon_days
    purchases = shop.events.filter(pl.col(EVENT_TYPE) == PURCHASE)
    before = set(purchases.filter(pl.col(TS) < as_of).get_column(USER_ID))
    window = (pl.col(TS) >= as_of) & (pl.col(TS) < as_of + dt.timedelta(days=h))
    inside = set(purchases.filter(window).get_column(USER_ID))
    quiet = sorted(before - inside)[0]  # bought before T, nothing in the window
    item = shop.catalog.get_column(ITEM_ID).sort()[0]
    new_row = shop.events.filter(pl.col(EVENT_TYPE) == PURCHASE).head(1)
    new_row = new_row.with_columns(
        pl.lit("zz-new").alias(USER_ID),
        pl.lit(item).alias(ITEM_ID),
        pl.lit(as_of + dt.timedelta(days=1)).cast(new_row.schema[TS]).alias(TS),
    )
    events = pl.concat([shop.events, new_row])
    order = pl.concat(
        [
            events.filter(pl.col(EVENT_TYPE) == PURCHASE).select(
                USER_ID, pl.col(TS).cast(pl.Datetime("us"))
            ),
            lines([("zz-new", as_of - dt.timedelta(days=3)), (quiet, as_of + dt.timedelta(1))]),
        ]
    )
    old = run_backtest(events, shop.catalog, as_of, tiny_settings, 20, kinds=("lightgbm",))
    new = run_backtest(
        events, shop.catalog, as_of, tiny_settings, 20, kinds=("lightgbm",), lines=order
    )
    n = len(evaluated_users(events, as_of, h))
    assert (old.users, old.unserved, old.without_truth, old.user_set) == (
        n,
        0,
        0,
        "purchase events",
    )
    assert (new.users, new.unserved, new.without_truth, new.user_set) == (
        n + 2,
        1,
        1,
        "order lines",
    )
    for metric in ("ndcg@10", "recall@10", "hitrate@10"):
        assert new.metrics["lightgbm"][metric] == pytest.approx(
            old.metrics["lightgbm"][metric] * n / (n + 2)
        )
    assert new.metrics["lightgbm"]["users"] == n + 2
    assert len(new.ndcg_diffs) == n + 2
