"""Features for (customer, item) candidate pairs as of a moment, in Polars.

Point-in-time: the first thing `build_features` does is drop every event at or after as_of,
and every window is measured back from as_of, so no feature can see the future.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from tasks.constants import (
    CART,
    CATEGORY,
    EVENT_TYPE,
    ITEM_BUYER_WINDOWS_DAYS,
    ITEM_ID,
    ORDER_ID,
    PRICE,
    PURCHASE,
    QUANTITY,
    TS,
    USER_ID,
    VIEW,
)
from tasks.timeutil import age_days, events_before

UNKNOWN_CATEGORY = "__unknown__"

# Features added in version 2 of the feature table, by group. Each group was kept only because
# it raised the mean NDCG@10 of the nightly trainer on the validation folds before each
# development cut (benchmarks/feature_selection.py, results/feature_selection.md).
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "cycle": ("ui_median_gap", "ui_cycle_ratio", "i_repurchase_gap", "ui_due_vs_item"),
    "activity": ("u_items_90d", "u_trend"),
    "item_trend": ("i_trend_90d", "i_recent_share"),
    "category": ("ui_category_share",),
    "engagement": ("ui_views", "ui_carts"),
}
# The smallest repurchase gap a ratio divides by: two orders of an item on the same day are one
# day apart for the cycle, so a ratio never divides by (almost) zero.
MIN_GAP_DAYS = 1.0


def _order_key() -> pl.Expr:
    """An order is its order id, or the customer's day when the feed has none."""
    return pl.coalesce(
        pl.col(ORDER_ID), pl.col(USER_ID) + pl.lit("@") + pl.col(TS).dt.date().cast(pl.Utf8)
    )


def _with_category(frame: pl.DataFrame, catalog: pl.DataFrame) -> pl.DataFrame:
    categories = catalog.select(ITEM_ID, pl.col(CATEGORY).fill_null(UNKNOWN_CATEGORY))
    return frame.join(categories, on=ITEM_ID, how="left").with_columns(
        pl.col(CATEGORY).fill_null(UNKNOWN_CATEGORY)
    )


def repurchase_gaps(purchases: pl.DataFrame) -> pl.DataFrame:
    """user_id, item_id, gap: the days between each pair of consecutive orders of an item by a
    customer (one row per repeat order; none for an item bought in one order)."""
    orders = purchases.group_by(USER_ID, ITEM_ID, "order").agg(pl.col("age").max())
    return (
        orders.sort(USER_ID, ITEM_ID, "age", "order", descending=[False, False, True, False])
        .with_columns((pl.col("age").shift(1) - pl.col("age")).over(USER_ID, ITEM_ID).alias("gap"))
        .filter(pl.col("gap").is_not_null())
        .select(USER_ID, ITEM_ID, "gap")
    )


def user_item_features(
    purchases: pl.DataFrame, events: pl.DataFrame, as_of: dt.datetime
) -> pl.DataFrame:
    """How this customer has bought (and recently looked at) this item."""
    bought = purchases.group_by(USER_ID, ITEM_ID).agg(
        pl.col("order").n_unique().alias("ui_orders"),
        pl.len().alias("ui_lines"),
        pl.col(QUANTITY).sum().cast(pl.Float64).alias("ui_qty"),
        pl.col("age").min().alias("ui_days_since_last"),
        pl.col("age").max().alias("ui_days_since_first"),
        (pl.col(QUANTITY) * pl.col(PRICE)).sum().alias("ui_spend"),
        (pl.col("age") <= 30).sum().cast(pl.Int32).alias("ui_lines_30d"),
        pl.col("order").filter(pl.col("age") <= 30).n_unique().alias("ui_orders_30d"),
        pl.col("order").filter(pl.col("age") <= 90).n_unique().alias("ui_orders_90d"),
    )
    span = pl.col("ui_days_since_first") - pl.col("ui_days_since_last")
    cadence = pl.when(pl.col("ui_orders") > 1).then(span / (pl.col("ui_orders") - 1))
    bought = bought.with_columns(cadence.alias("ui_cadence")).with_columns(
        (pl.col("ui_days_since_last") / (pl.col("ui_cadence") + 1.0)).alias("ui_reorder_ratio"),
        (pl.col("ui_days_since_last") - pl.col("ui_cadence")).abs().alias("ui_days_from_due"),
    )
    gaps = (
        repurchase_gaps(purchases)
        .group_by(USER_ID, ITEM_ID)
        .agg(pl.col("gap").median().alias("ui_median_gap"))
    )
    bought = bought.join(gaps, on=[USER_ID, ITEM_ID], how="left").with_columns(
        (pl.col("ui_days_since_last") / pl.col("ui_median_gap").clip(MIN_GAP_DAYS)).alias(
            "ui_cycle_ratio"
        )
    )
    recent = events.filter(pl.col("age") <= 30)
    looked = recent.group_by(USER_ID, ITEM_ID).agg(
        (pl.col(EVENT_TYPE) == VIEW).sum().cast(pl.Int32).alias("ui_views_30d"),
        (pl.col(EVENT_TYPE) == CART).sum().cast(pl.Int32).alias("ui_carts_30d"),
        pl.col("age").min().alias("ui_days_since_touch"),
    )
    engaged = (
        events.filter(pl.col(EVENT_TYPE).is_in([VIEW, CART]))
        .group_by(USER_ID, ITEM_ID)
        .agg(
            (pl.col(EVENT_TYPE) == VIEW).sum().cast(pl.Int32).alias("ui_views"),
            (pl.col(EVENT_TYPE) == CART).sum().cast(pl.Int32).alias("ui_carts"),
        )
    )
    return bought.join(looked, on=[USER_ID, ITEM_ID], how="full", coalesce=True).join(
        engaged, on=[USER_ID, ITEM_ID], how="full", coalesce=True
    )


def user_features(purchases: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Recency, frequency, monetary value, basket size and cadence of each customer."""
    orders = purchases.group_by(USER_ID, "order").agg(
        pl.col("age").min().alias("order_age"), pl.len().alias("order_lines")
    )
    per_user_orders = orders.group_by(USER_ID).agg(
        pl.len().alias("u_orders"),
        pl.col("order_age").min().alias("u_days_since_last"),
        pl.col("order_age").max().alias("u_days_since_first"),
        pl.col("order_lines").mean().alias("u_basket_lines"),
        (pl.col("order_age") <= 90).sum().cast(pl.Int32).alias("u_orders_90d"),
        (pl.col("order_age") <= 30).sum().cast(pl.Int32).alias("u_orders_30d"),
    )
    per_user_lines = purchases.group_by(USER_ID).agg(
        pl.col(ITEM_ID).n_unique().alias("u_items"),
        pl.col(ITEM_ID).filter(pl.col("age") <= 90).n_unique().alias("u_items_90d"),
        (pl.col(QUANTITY) * pl.col(PRICE)).sum().alias("u_spend"),
        pl.col(PRICE).median().alias("u_median_price"),
    )
    interval = pl.when(pl.col("u_orders") > 1).then(
        (pl.col("u_days_since_first") - pl.col("u_days_since_last")) / (pl.col("u_orders") - 1)
    )
    activity = events.group_by(USER_ID).agg(
        (pl.col("age") <= 7).sum().cast(pl.Int32).alias("u_events_7d"),
        pl.col("age").min().alias("u_days_since_event"),
    )
    return (
        per_user_orders.join(per_user_lines, on=USER_ID)
        .with_columns(
            interval.alias("u_interval"),
            # Orders a month in the last 30 days over those of the last 90: above 1, the
            # customer is buying more often than of late.
            ((pl.col("u_orders_30d") * 3.0 + 1.0) / (pl.col("u_orders_90d") + 1.0)).alias(
                "u_trend"
            ),
        )
        .with_columns(
            (pl.col("u_days_since_last") / (pl.col("u_interval") + 1.0)).alias("u_overdue")
        )
        .join(activity, on=USER_ID, how="full", coalesce=True)
    )


def item_features(purchases: pl.DataFrame) -> pl.DataFrame:
    """Popularity over several windows, trend, price and how often buyers come back."""
    per_buyer = purchases.group_by(ITEM_ID, USER_ID).agg(
        pl.col("order").n_unique().alias("orders"), pl.col("age").min().alias("age")
    )
    buyers = per_buyer.group_by(ITEM_ID).agg(
        pl.len().alias("i_buyers"),
        *(
            (pl.col("age") <= d).sum().cast(pl.Int32).alias(f"i_buyers_{d}d")
            for d in ITEM_BUYER_WINDOWS_DAYS
        ),
        (pl.col("orders") > 1).mean().alias("i_repeat_rate"),
    )
    sales = purchases.group_by(ITEM_ID).agg(
        pl.col(PRICE).filter(pl.col("age") <= 90).median().alias("i_price_90d"),
        pl.col(PRICE).median().alias("i_price_all"),
        pl.col("age").max().alias("i_days_since_first_sale"),
        pl.col("age").min().alias("i_days_since_last_sale"),
        pl.col(QUANTITY).filter(pl.col("age") <= 30).sum().cast(pl.Float64).alias("i_qty_30d"),
    )
    gaps = (
        repurchase_gaps(purchases)
        .group_by(ITEM_ID)
        .agg(pl.col("gap").median().alias("i_repurchase_gap"))
    )
    trend = (pl.col("i_buyers_7d") * (30.0 / 7.0) + 1.0) / (pl.col("i_buyers_30d") + 1.0)
    trend_90d = (pl.col("i_buyers_30d") * 3.0 + 1.0) / (pl.col("i_buyers_90d") + 1.0)
    return (
        buyers.join(sales, on=ITEM_ID)
        .join(gaps, on=ITEM_ID, how="left")
        .with_columns(
            trend.alias("i_trend"),
            trend_90d.alias("i_trend_90d"),
            (pl.col("i_buyers_90d") / pl.col("i_buyers")).alias("i_recent_share"),
            pl.coalesce("i_price_90d", "i_price_all").alias("i_price"),
        )
        .drop("i_price_90d", "i_price_all")
    )


def user_category_share(purchases: pl.DataFrame) -> pl.DataFrame:
    """The customer's share of lines per category, and their lines in it (uc_lines)."""
    return (
        purchases.group_by(USER_ID, CATEGORY)
        .agg(pl.len().alias("uc_lines"))
        .with_columns(
            (pl.col("uc_lines") / pl.col("uc_lines").sum().over(USER_ID)).alias("uc_share")
        )
    )


def category_buyers(purchases: pl.DataFrame) -> pl.DataFrame:
    """Distinct buyers per category in the last 30 days."""
    return (
        purchases.filter(pl.col("age") <= 30)
        .group_by(CATEGORY)
        .agg(pl.col(USER_ID).n_unique().cast(pl.Int32).alias("c_buyers_30d"))
    )


@dataclass(frozen=True)
class SharedFeatures:
    """The item and category features at one as-of, from every customer's purchases: built
    once, they let any shard of customers get exactly its rows of the whole."""

    items: pl.DataFrame
    categories: pl.DataFrame


def _past(events: pl.DataFrame, catalog: pl.DataFrame, as_of: dt.datetime) -> pl.DataFrame:
    return _with_category(events_before(events, as_of), catalog).with_columns(
        age_days(as_of).alias("age"), _order_key().alias("order")
    )


def shared_features(
    events: pl.DataFrame, catalog: pl.DataFrame, as_of: dt.datetime
) -> SharedFeatures:
    purchases = _past(events, catalog, as_of).filter(pl.col(EVENT_TYPE) == PURCHASE)
    return SharedFeatures(item_features(purchases), category_buyers(purchases))


def build_features(
    events: pl.DataFrame,
    candidates: pl.DataFrame,
    catalog: pl.DataFrame,
    as_of: dt.datetime,
    shared: SharedFeatures | None = None,
) -> pl.DataFrame:
    """One row per candidate (user_id, item_id) with every feature, computed as of `as_of`.
    With `shared` (from every customer's events), `events` need only hold the candidates'
    customers' own events."""
    past = _past(events, catalog, as_of)
    purchases = past.filter(pl.col(EVENT_TYPE) == PURCHASE)
    if shared is None:
        shared = SharedFeatures(item_features(purchases), category_buyers(purchases))
    frame = (
        _with_category(candidates, catalog)
        .join(user_item_features(purchases, past, as_of), on=[USER_ID, ITEM_ID], how="left")
        .join(user_features(purchases, past), on=USER_ID, how="left")
        .join(shared.items, on=ITEM_ID, how="left")
        .join(user_category_share(purchases), on=[USER_ID, CATEGORY], how="left")
        .join(shared.categories, on=CATEGORY, how="left")
    )
    last_order = (
        purchases.filter(pl.col("age") == pl.col("age").min().over(USER_ID))
        .select(USER_ID, ITEM_ID)
        .unique()
        .with_columns(pl.lit(1, dtype=pl.Int8).alias("ui_in_last_order"))
    )
    frame = frame.join(last_order, on=[USER_ID, ITEM_ID], how="left")
    return frame.with_columns(
        pl.col("uc_share").fill_null(0.0),
        pl.col("ui_in_last_order").fill_null(0),
        (pl.col("ui_orders").fill_null(0) / pl.col("u_orders")).alias("ui_order_share"),
        (pl.col("ui_orders_90d") / pl.col("u_orders_90d")).alias("ui_order_share_90d"),
        pl.col("ui_orders").fill_null(0),
        (pl.col("i_price") / pl.col("u_median_price")).alias("price_ratio"),
        (pl.col("ui_days_since_last") / (pl.col("u_interval") + 1.0)).alias(
            "ui_age_vs_user_interval"
        ),
        # The item's share of the customer's lines in its category (0 when never bought).
        (pl.col("ui_lines").fill_null(0) / pl.col("uc_lines"))
        .fill_null(0.0)
        .alias("ui_category_share"),
        (pl.col("ui_days_since_last") / pl.col("i_repurchase_gap").clip(MIN_GAP_DAYS)).alias(
            "ui_due_vs_item"
        ),
        pl.col("ui_views").fill_null(0),
        pl.col("ui_carts").fill_null(0),
    ).drop(CATEGORY, "uc_lines")


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The model's inputs: every numeric column but the keys and the label."""
    keys = {USER_ID, ITEM_ID, "label"}
    return [c for c, dtype in frame.schema.items() if c not in keys and dtype.is_numeric()]
