"""Synthetic shop: customers with tastes, staples and sessions, written as daily landing files.

Why: `nightrec demo` and the tests need a shop whose signal is known (taste categories,
re-order cadence, weekly rhythm, a view -> cart -> purchase funnel) so that a pipeline that
learns it can be checked, and bad rows whose count is known so that quarantine can be checked.
Everything is drawn from one numpy Generator seeded by the config: same config, same shop.

Two shapes: `SynthShopConfig` is a small web shop (sessions of views, carts and purchases);
`GroceryShopConfig` is a grocery chain (weekly trips of 10-30 lines, purchases only, a large
long-tail catalog with brands, per-household staples, some items without a price), the shape
of a real chain's export. `generate_shop` and `write_landing` take either.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from tasks.constants import (
    BRAND,
    CART,
    CATALOG_COLUMNS,
    CATEGORY,
    EVENT_COLUMNS,
    EVENT_TYPE,
    ITEM_ID,
    ORDER_ID,
    PRICE,
    PURCHASE,
    QUANTITY,
    SESSION_ID,
    TITLE,
    TS,
    USER_ID,
    VIEW,
)
from tasks.schema import EVENTS_SCHEMA

TS_FORMAT = "%Y-%m-%d %H:%M:%S"
SECONDS_PER_DAY = 86_400

# Behaviour of the shop. The config says how big it is; these say how its customers act.
TASTE_ALPHA = 0.15  # Dirichlet concentration: small, so a customer has 1-3 favourite categories
MEAN_SESSIONS_PER_DAY = 0.08  # browse sessions per customer per weekday, averaged over customers
ACTIVITY_SIGMA = 0.8  # lognormal spread of activity between customers
EXTRA_VIEWS_PER_SESSION = 4.0  # Poisson mean of views after the first one
MAX_VIEWS_PER_SESSION = 30
SESSION_FOCUS = 0.75  # share of a session's views in the category the session is about
CART_RATE = 0.25  # chance a viewed item is added to the cart
BUY_RATE = 0.45  # chance a carted item is bought at checkout
EXTRA_QUANTITY = 0.25  # Poisson mean of units beyond one in a browse purchase
STAPLES_PER_CUSTOMER = 1.0  # Poisson mean of items a customer re-orders on a cadence
STAPLE_CADENCE_DAYS = (7.0, 30.0)  # uniform range of a staple's re-order interval
STAPLE_JITTER = 0.1  # sd of a re-order's timing, as a share of the cadence
STAPLE_KEEP = 0.93  # chance a due re-order happens at all
STAPLE_EXTRA_QUANTITY = 0.6  # Poisson mean of a staple's habitual units beyond one
STAPLE_SESSION_VIEWS = 0.5  # Poisson mean of browse views in a re-order session
ZIPF_EXPONENT = 1.1  # item popularity ~ rank ** -exponent within a category
CATEGORY_PRICE_LOG_MEAN = 3.0  # median category price ~ exp(3) = 20
CATEGORY_PRICE_SIGMA = 0.7
ITEM_PRICE_SIGMA = 0.35
PURCHASE_PRICE_NOISE = 0.03  # purchases pay the catalog price within a few percent
VIEW_GAP_S = 45.0  # mean seconds between views
CART_GAP_S = 20.0  # mean seconds from a view to its add-to-cart
CHECKOUT_GAP_S = 60.0  # mean seconds from the last view or cart to checkout
MAX_GAP_S = 900.0  # caps keep a session well inside one day
# Relative session starts per hour of the day: quiet nights, a lunch bump, an evening peak.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 6, 7, 9, 11, 12, 11, 7, 3)

COLOURS = ("Blue", "Red", "Green", "Black", "White", "Grey", "Yellow", "Oak", "Steel", "Pink")
NOUNS = (
    "mug", "lamp", "towel", "candle", "notebook", "scarf", "bottle", "pan", "plant pot",
    "cushion", "soap", "tea", "coffee", "sock", "brush", "frame",
)  # fmt: skip

BAD_TIMESTAMP = "bad_timestamp"
BAD_QUANTITY = "bad_quantity"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
MISSING_USER_ID = "missing_user_id"
MALFORMED_KINDS = (BAD_TIMESTAMP, BAD_QUANTITY, UNKNOWN_EVENT_TYPE, MISSING_USER_ID)
MALFORMED_SEED_TAG = 0x6D616C  # a second stream from the same seed, so the shop stays unchanged
EVENT_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.csv$")

CATALOG_SCHEMA = {ITEM_ID: pl.Utf8, TITLE: pl.Utf8, CATEGORY: pl.Utf8, PRICE: pl.Float64}


@dataclass(frozen=True)
class SynthShopConfig:
    """Size, calendar and seed of a synthetic shop."""

    n_customers: int = 300
    n_items: int = 250
    n_categories: int = 10
    start: dt.date = dt.date(2026, 1, 5)
    days: int = 120
    seed: int = 7
    weekend_factor: float = 1.6  # sessions per day on Sat/Sun relative to weekdays
    malformed_rows_per_day: float = 0.5  # expected malformed rows injected per daily file

    def __post_init__(self) -> None:
        """Fail on a config that cannot make a shop, before any work is done."""
        if self.n_customers < 1 or self.n_categories < 1 or self.days < 1:
            raise ValueError("n_customers, n_categories and days must be at least 1")
        if self.n_items < self.n_categories:
            raise ValueError("n_items must be at least n_categories (no empty category)")
        if not self.weekend_factor > 0:
            raise ValueError("weekend_factor must be positive")
        if not self.malformed_rows_per_day >= 0:
            raise ValueError("malformed_rows_per_day must be zero or more")


@dataclass(frozen=True)
class SyntheticShop:
    """A generated shop: clean canonical events (sorted by ts) and the catalog."""

    events: pl.DataFrame  # EVENT_COLUMNS, typed as EVENTS_SCHEMA
    catalog: pl.DataFrame  # CATALOG_COLUMNS (grocery: GROCERY_CATALOG_COLUMNS), typed
    config: ShopConfig


@dataclass(frozen=True)
class LandingReport:
    """What write_landing wrote, so that ingest and quarantine counts can be checked."""

    files: list[Path]  # daily event files written, in date order
    catalog_path: Path
    malformed_rows: dict[str, int]  # kind -> number injected, over all files
    rows_written: int  # data rows in all event files (good + malformed)


@dataclass(frozen=True)
class _Catalog:
    """Catalog arrays the samplers need (item index = position in the catalog frame)."""

    frame: pl.DataFrame
    category: np.ndarray  # item -> category index
    price: np.ndarray  # item -> catalog price
    by_category: np.ndarray  # items ordered by category (the order of popularity_cdf)
    popularity_cdf: np.ndarray  # per category, cumulative popularity, offset by category index


@dataclass(frozen=True)
class _Customers:
    """Customer arrays: tastes as a grouped cdf over categories, and activity rates."""

    taste: np.ndarray  # (customers, categories), rows sum to 1
    taste_cdf: np.ndarray  # flattened cumulative taste, offset by customer index
    rate: np.ndarray  # browse sessions per weekday


# --- small helpers -------------------------------------------------------------------------


def _width(count: int, minimum: int) -> int:
    """Zero padding so that ids sort as text, widened for large configs."""
    return max(minimum, len(str(count)))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """1-based ids like `u00001` for 0-based indices."""
    digits = pl.Series(np.asarray(numbers, dtype=np.int64) + 1).cast(pl.Utf8).str.zfill(width)
    return (prefix + digits).rename(prefix)


def _id_expr(prefix: str, column: str, width: int) -> pl.Expr:
    """The same ids as _ids, as an expression over a 0-based index column."""
    return pl.lit(prefix) + (pl.col(column) + 1).cast(pl.Utf8).str.zfill(width)


def _grouped_cdf(weights: np.ndarray) -> np.ndarray:
    """Row-wise cumulative shares, each row offset by its index, flattened.

    One sorted array lets searchsorted draw from a different distribution per row without a
    (draws x outcomes) matrix.
    """
    cum = np.cumsum(weights, axis=1)
    cum = cum / cum[:, -1:]
    cum[:, -1] = 1.0
    return (cum + np.arange(weights.shape[0])[:, None]).ravel()


def _draw_grouped(cdf: np.ndarray, group: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Flat position drawn for each (group, uniform) from a _grouped_cdf-shaped array."""
    return np.searchsorted(cdf, group + u, side="right")


def _gaps(rng: np.random.Generator, mean: float, size: int, floor: float = 2.0) -> np.ndarray:
    """Seconds between two actions: exponential, at least `floor`, capped."""
    return np.minimum(floor + rng.exponential(mean, size), MAX_GAP_S)


# --- catalog and customers -----------------------------------------------------------------


def _build_catalog(config: SynthShopConfig, rng: np.random.Generator) -> _Catalog:
    """Items spread over every category, lognormal prices, Zipf popularity within category."""
    n, k = config.n_items, config.n_categories
    category = rng.permutation(np.arange(n) % k)
    category_median = np.exp(rng.normal(CATEGORY_PRICE_LOG_MEAN, CATEGORY_PRICE_SIGMA, k))
    price = category_median[category] * rng.lognormal(0.0, ITEM_PRICE_SIGMA, n)
    price = np.maximum(np.round(price, 2), 0.5)

    by_category = np.argsort(category, kind="stable")
    sizes = np.bincount(category, minlength=k)
    width = sizes.max()
    weights = np.zeros((k, width))
    for c in range(k):  # small: one pass per category
        ranks = rng.permutation(sizes[c]) + 1.0
        weights[c, : sizes[c]] = ranks**-ZIPF_EXPONENT
    # Padding has zero weight, so it is never drawn; flatten skipping it to keep positions.
    cdf = _grouped_cdf(weights)
    real = (np.arange(width)[None, :] < sizes[:, None]).ravel()
    popularity_cdf = cdf[real]

    colour = rng.integers(0, len(COLOURS), n)
    titles = [f"{COLOURS[colour[i]]} {NOUNS[category[i] % len(NOUNS)]} {i + 1}" for i in range(n)]
    frame = pl.DataFrame(
        {
            ITEM_ID: _ids("i", np.arange(n), _width(n, 4)),
            TITLE: pl.Series(titles, dtype=pl.Utf8),
            CATEGORY: _ids("c", category, _width(k, 2)),
            PRICE: pl.Series(price, dtype=pl.Float64),
        },
        schema=CATALOG_SCHEMA,
    )
    return _Catalog(frame, category, price, by_category, popularity_cdf)


def _build_customers(config: SynthShopConfig, rng: np.random.Generator) -> _Customers:
    """Concentrated Dirichlet tastes and lognormal activity (mean MEAN_SESSIONS_PER_DAY)."""
    n, k = config.n_customers, config.n_categories
    taste = rng.dirichlet(np.full(k, TASTE_ALPHA), n) if k > 1 else np.ones((n, 1))
    taste = np.nan_to_num(taste, nan=0.0)
    taste[taste.sum(axis=1) == 0, 0] = 1.0  # guard against an all-underflow draw
    rate = MEAN_SESSIONS_PER_DAY * rng.lognormal(-(ACTIVITY_SIGMA**2) / 2, ACTIVITY_SIGMA, n)
    return _Customers(taste, _grouped_cdf(taste), rate)


def _draw_categories(
    customers: _Customers, customer: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A category per row from that row's customer's taste."""
    k = customers.taste.shape[1]
    position = _draw_grouped(customers.taste_cdf, customer, rng.random(customer.size))
    return position - customer * k


def _draw_items(catalog: _Catalog, category: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An item per row from its category's popularity."""
    position = _draw_grouped(catalog.popularity_cdf, category, rng.random(category.size))
    return catalog.by_category[position]


# --- calendar: weekly rhythm ---------------------------------------------------------------


def _day_factors(config: SynthShopConfig) -> np.ndarray:
    """Relative shop traffic per day of the range: weekend_factor on Sat/Sun, else 1."""
    weekday = (config.start.weekday() + np.arange(config.days)) % 7
    return np.where(weekday >= 5, config.weekend_factor, 1.0)


def _browse_sessions(
    config: SynthShopConfig, customers: _Customers, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(customer, day) of each browse session: Poisson per customer-day, scaled by the day."""
    counts = rng.poisson(_day_factors(config)[:, None] * customers.rate[None, :])
    day, customer = np.nonzero(counts)
    repeat = counts[day, customer]
    return np.repeat(customer, repeat), np.repeat(day, repeat)


def _staple_orders(
    config: SynthShopConfig, customers: _Customers, catalog: _Catalog, rng: np.random.Generator
) -> pl.DataFrame:
    """Due re-orders of each customer's staples: customer, day, item, quantity.

    A staple recurs every `cadence` days of *traffic time* (the cumulative day factors), with
    a random phase and small jitter. Mapped back to calendar days this keeps the cadence
    (exactly so for whole weeks) and makes re-orders follow the weekly rhythm like sessions.
    """
    n_staples = rng.poisson(STAPLES_PER_CUSTOMER, config.n_customers)
    customer = np.repeat(np.arange(config.n_customers), n_staples)
    item = _draw_items(catalog, _draw_categories(customers, customer, rng), rng)
    staples = (
        pl.DataFrame({"customer": customer, "item": item})
        .unique(maintain_order=True)  # a repeated draw is the same staple
        .to_numpy()
    )
    customer, item = staples[:, 0], staples[:, 1]
    n = customer.size

    factors = _day_factors(config)
    edges = np.concatenate([[0.0], np.cumsum(factors)])
    week_mean = (5.0 + 2.0 * config.weekend_factor) / 7.0
    spacing = rng.uniform(*STAPLE_CADENCE_DAYS, n) * week_mean
    phase = rng.uniform(0.0, spacing)
    quantity = 1 + rng.poisson(STAPLE_EXTRA_QUANTITY, n)
    repeats = int(np.ceil(edges[-1] / spacing.min())) + 2 if n else 0
    steps = np.arange(repeats)[None, :]
    when = phase[:, None] + steps * spacing[:, None]
    when = when + rng.normal(0.0, STAPLE_JITTER, when.shape) * spacing[:, None]
    keep = (when >= 0) & (when < edges[-1]) & (rng.random(when.shape) < STAPLE_KEEP)
    row, _ = np.nonzero(keep)
    day = np.searchsorted(edges, when[keep], side="right") - 1
    return pl.DataFrame(
        {
            "customer": customer[row].astype(np.int64),
            "day": day.astype(np.int64),
            "item": item[row].astype(np.int64),
            "quantity": quantity[row].astype(np.int64),
        }
    ).unique(subset=["customer", "day", "item"], keep="first", maintain_order=True)


# --- sessions -> events --------------------------------------------------------------------


def _sessions(
    config: SynthShopConfig,
    customers: _Customers,
    staple_orders: pl.DataFrame,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """One row per session: key, customer, day, number of browse views, start hour draw."""
    browse_customer, browse_day = _browse_sessions(config, customers, rng)
    staple_sessions = staple_orders.select("customer", "day").unique(maintain_order=True)
    customer = np.concatenate([browse_customer, staple_sessions["customer"].to_numpy()])
    day = np.concatenate([browse_day, staple_sessions["day"].to_numpy()])
    n_browse = browse_customer.size
    views = np.concatenate(
        [
            1 + np.minimum(rng.poisson(EXTRA_VIEWS_PER_SESSION, n_browse), MAX_VIEWS_PER_SESSION),
            np.minimum(rng.poisson(STAPLE_SESSION_VIEWS, staple_sessions.height), 5),
        ]
    )
    start = _seconds_into_day(rng, HOUR_WEIGHTS, customer.size)
    return pl.DataFrame(
        {
            "session": np.arange(customer.size, dtype=np.int64),
            "customer": customer.astype(np.int64),
            "day": day.astype(np.int64),
            "n_views": views.astype(np.int64),
            "start_raw": start.astype(np.int64),
        }
    )


def _views(
    sessions: pl.DataFrame,
    staple_orders: pl.DataFrame,
    customers: _Customers,
    catalog: _Catalog,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Views of every session with offsets (s): browse views plus forced staple views.

    A browse view is mostly in the session's own category, so sessions look like errands.
    """
    session = np.repeat(sessions["session"].to_numpy(), sessions["n_views"].to_numpy())
    customer = np.repeat(sessions["customer"].to_numpy(), sessions["n_views"].to_numpy())
    own = _draw_categories(customers, sessions["customer"].to_numpy(), rng)
    own = np.repeat(own, sessions["n_views"].to_numpy())
    other = _draw_categories(customers, customer, rng)
    category = np.where(rng.random(session.size) < SESSION_FOCUS, own, other)
    browse = pl.DataFrame(
        {
            "session": session,
            "item": _draw_items(catalog, category, rng).astype(np.int64),
            "forced": np.zeros(session.size, dtype=bool),
            "quantity": 1 + rng.poisson(EXTRA_QUANTITY, session.size).astype(np.int64),
        }
    )
    forced = staple_orders.join(
        sessions.select("session", "customer", "day"),
        on=["customer", "day"],
        how="left",
        maintain_order="left",
    ).select(
        "session",
        "item",
        pl.lit(True).alias("forced"),
        pl.col("quantity").cast(pl.Int64),
    )
    views = pl.concat([browse, forced])
    views = (
        views.with_columns(pl.Series("order_key", rng.random(views.height)))
        .sort("session", "order_key")
        .with_columns(pl.Series("gap", _gaps(rng, VIEW_GAP_S, views.height, floor=5.0)))
    )
    return views.with_columns(pl.col("gap").cum_sum().over("session").alias("offset")).drop(
        "order_key", "gap"
    )


def _carts_and_purchases(
    views: pl.DataFrame, rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Some views become carts (one per session and item); some carts are bought at checkout."""
    wants = rng.random(views.height) < CART_RATE
    carts = (
        views.filter(pl.col("forced") | pl.Series(wants))
        .sort("session", "forced", "offset", descending=[False, True, False])
        .unique(subset=["session", "item"], keep="first", maintain_order=True)
        .sort("session", "offset")
    )
    carts = carts.with_columns(pl.col("offset") + pl.Series(_gaps(rng, CART_GAP_S, carts.height)))
    buys = rng.random(carts.height) < BUY_RATE
    purchases = carts.filter(pl.col("forced") | pl.Series(buys))
    return carts, purchases


def _timed_sessions(
    sessions: pl.DataFrame,
    views: pl.DataFrame,
    carts: pl.DataFrame,
    purchases: pl.DataFrame,
    config: SynthShopConfig,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Session start, checkout offset, and the ids (sessions and orders numbered by time)."""
    last = (
        pl.concat([views.select("session", "offset"), carts.select("session", "offset")])
        .group_by("session")
        .agg(pl.col("offset").max().alias("last"))
    )
    ordered = purchases.select("session").unique().sort("session")
    checkout = ordered.with_columns(
        pl.Series("checkout_gap", _gaps(rng, CHECKOUT_GAP_S, ordered.height, floor=10.0))
    )
    base = np.datetime64(config.start, "us")
    timed = (
        sessions.join(last, on="session", how="left", maintain_order="left")
        .join(checkout, on="session", how="left", maintain_order="left")
        .with_columns((pl.col("last") + pl.col("checkout_gap")).alias("checkout"))
        .with_columns(
            pl.max_horizontal("last", "checkout").floor().cast(pl.Int64).alias("duration")
        )
        .with_columns(
            pl.min_horizontal("start_raw", SECONDS_PER_DAY - 1 - pl.col("duration")).alias("start")
        )
        .with_columns(
            (pl.lit(base) + pl.duration(seconds=pl.col("day") * SECONDS_PER_DAY + pl.col("start")))
            .cast(pl.Datetime("us"))
            .alias("t0")
        )
        .sort("t0", "customer", "session")
    )
    timed = timed.with_row_index("rank").with_columns(
        _id_expr("s", "rank", _width(timed.height, 6)).alias(SESSION_ID)
    )
    orders = (
        timed.filter(pl.col("checkout").is_not_null())
        .sort(pl.col("t0") + pl.duration(seconds=pl.col("checkout").floor()), "rank")
        .with_row_index("order_rank")
    )
    orders = orders.select(
        "session", _id_expr("o", "order_rank", _width(orders.height, 6)).alias(ORDER_ID)
    )
    return timed.join(orders, on="session", how="left", maintain_order="left").select(
        "session", "customer", "t0", "checkout", SESSION_ID, ORDER_ID
    )


def _shown_price(frame: pl.DataFrame, catalog: _Catalog) -> pl.Series:
    """The catalog price of each row's item: what a view or a cart shows."""
    return pl.Series(PRICE, catalog.price[frame["item"].to_numpy()], dtype=pl.Float64)


def _events(
    views: pl.DataFrame,
    carts: pl.DataFrame,
    purchases: pl.DataFrame,
    timed: pl.DataFrame,
    catalog: _Catalog,
    config: SynthShopConfig,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Canonical events from the three funnel steps, timed within their session's day."""
    noise = np.exp(rng.normal(0.0, PURCHASE_PRICE_NOISE, purchases.height))
    paid = np.maximum(np.round(catalog.price[purchases["item"].to_numpy()] * noise, 2), 0.01)
    steps = [
        views.select("session", "item", "offset", pl.lit(1, pl.Int64).alias(QUANTITY)).with_columns(
            pl.lit(VIEW).alias(EVENT_TYPE), _shown_price(views, catalog)
        ),
        carts.select("session", "item", "offset", QUANTITY).with_columns(
            pl.lit(CART).alias(EVENT_TYPE), _shown_price(carts, catalog)
        ),
        purchases.select(
            "session", "item", pl.lit(None, pl.Float64).alias("offset"), QUANTITY
        ).with_columns(pl.lit(PURCHASE).alias(EVENT_TYPE), pl.Series(PRICE, paid)),
    ]
    width = _width(config.n_customers, 5)
    step_rank = pl.col(EVENT_TYPE).replace_strict({VIEW: 0, CART: 1, PURCHASE: 2})
    events = (
        pl.concat(steps)
        .join(timed, on="session", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col(EVENT_TYPE) == PURCHASE)
            .then(pl.col("checkout"))
            .otherwise(pl.col("offset"))
            .floor()
            .cast(pl.Int64)
            .alias("offset"),
        )
        .with_columns(
            _id_expr("u", "customer", width).alias(USER_ID),
            _id_expr("i", "item", _width(config.n_items, 4)).alias(ITEM_ID),
            (pl.col("t0") + pl.duration(seconds=pl.col("offset"))).alias(TS),
            pl.when(pl.col(EVENT_TYPE) == PURCHASE).then(pl.col(ORDER_ID)).alias(ORDER_ID),
        )
        .sort(TS, SESSION_ID, step_rank, ITEM_ID)
    )
    return events.select(EVENT_COLUMNS).cast(EVENTS_SCHEMA)


def generate_shop(config: ShopConfig) -> SyntheticShop:
    """Draw a whole shop from config.seed: catalog, customers, sessions, staples, events.

    A GroceryShopConfig draws a grocery chain instead (see `_generate_grocery`).
    """
    if isinstance(config, GroceryShopConfig):
        return _generate_grocery(config)
    rng = np.random.default_rng(config.seed)
    catalog = _build_catalog(config, rng)
    customers = _build_customers(config, rng)
    staple_orders = _staple_orders(config, customers, catalog, rng)
    sessions = _sessions(config, customers, staple_orders, rng)
    views = _views(sessions, staple_orders, customers, catalog, rng)
    carts, purchases = _carts_and_purchases(views, rng)
    timed = _timed_sessions(sessions, views, carts, purchases, config, rng)
    events = _events(views, carts, purchases, timed, catalog, config, rng)
    return SyntheticShop(events=events, catalog=catalog.frame, config=config)


# --- grocery chain -------------------------------------------------------------------------

GROCERY_CATALOG_COLUMNS = (ITEM_ID, TITLE, CATEGORY, BRAND, PRICE)
GROCERY_CATALOG_SCHEMA = {
    ITEM_ID: pl.Utf8,
    TITLE: pl.Utf8,
    CATEGORY: pl.Utf8,
    BRAND: pl.Utf8,
    PRICE: pl.Float64,
}
# Staple categories: bought by most households on most trips, each in its own brand.
STAPLE_CATEGORIES = (
    "milk", "bread", "eggs", "bananas", "butter", "cheese", "yogurt", "juice", "coffee",
    "cereal", "chicken", "potatoes", "tomatoes", "apples", "toilet paper",
)  # fmt: skip
DEPARTMENTS = (
    "bakery", "dairy", "produce", "meat", "frozen", "pantry", "snacks", "drinks", "household",
    "personal care", "baby", "pet", "deli", "seafood", "canned", "baking", "spices",
    "breakfast", "sweets", "wine",
)  # fmt: skip
BRAND_HEADS = (
    "North", "Green", "Sun", "Oak", "River", "Gold", "Blue", "Red", "Fair", "Farm", "Hill",
    "Maple", "Stone", "Silver", "Bright", "Old", "True", "Wild", "Pure", "Happy",
)  # fmt: skip
BRAND_TAILS = (
    "field", "valley", "fresh", "acre", "dale", "brook", "crest", "way", "land", "wood",
    "ridge", "meadow", "haven", "bay", "farm", "grove", "leaf", "mill", "harvest", "spring",
)  # fmt: skip
GROCERY_CATEGORY_SIZE_SIGMA = 1.0  # lognormal spread of category sizes: a few huge aisles
GROCERY_DEMAND_SIGMA = 1.0  # lognormal spread of category demand between non-staple aisles
STAPLE_DEMAND = 4.0  # demand of a staple aisle relative to a median aisle
GROCERY_ZIPF_EXPONENT = 1.2  # item popularity within a category: most items are long tail
GROCERY_TASTE_CONCENTRATION = 60.0  # Dirichlet concentration around the chain's demand
GROCERY_ACTIVITY_SIGMA = 0.5  # lognormal spread of trips per week between households
MAIN_TRIP_SHARE = 0.8  # share of a household's trips on its own weekday (the weekly shop)
MAX_MAIN_TRIP_PROB = 0.95
STAPLE_ADOPTION = 0.35  # chance a household buys a given staple category at all
PERSONAL_STAPLES = 1.5  # Poisson mean of extra staples from the household's own aisles
STAPLE_BUY_BETA = (4.0, 2.0)  # per-household chance to buy a staple on a trip: ~0.67
REPERTOIRE_BASE = 20  # items a household habitually picks from, at least
REPERTOIRE_EXTRA = 60.0  # Poisson mean of repertoire items beyond the base
REPERTOIRE_SHARE = 0.55  # share of non-staple lines from the repertoire (the rest explore)
BASKET_MEAN_RANGE = (12.0, 24.0)  # uniform range of a household's mean basket size
BASKET_SD = 3.0  # sd of a trip's basket size around its household's mean
BASKET_OVERSAMPLE = 6  # extra draws per trip so that duplicates rarely leave a basket short
GROCERY_EXTRA_QUANTITY = 0.35  # Poisson mean of units beyond one of a line
GROCERY_STAPLE_EXTRA_QUANTITY = 0.6
GROCERY_PRICE_LOG_MEAN = 1.1  # median aisle price ~ exp(1.1) = 3
GROCERY_PRICE_SIGMA = 0.6
PROMO_SHARE = 0.12  # lines bought on promotion
PROMO_FACTOR = 0.8  # price paid on promotion, relative to the catalog price
# Store opening hours: the shop opens at 7 and closes at 22.
GROCERY_HOUR_WEIGHTS = (0, 0, 0, 0, 0, 0, 0, 2, 4, 6, 7, 8, 8, 7, 6, 6, 8, 10, 11, 9, 6, 3, 0, 0)
# Weekday of a household's weekly shop, Monday first: Saturday is the busiest day.
MAIN_WEEKDAY_WEIGHTS = (1.0, 0.9, 1.0, 1.1, 1.4, 2.0, 1.2)


@dataclass(frozen=True)
class GroceryShopConfig:
    """Size, calendar and seed of a synthetic grocery chain (purchases only).

    The defaults are about the size of a real chain's year: 2.5k households, 68k products,
    roughly 1.5 million order lines.
    """

    n_customers: int = 2_500  # households
    n_items: int = 68_000
    n_categories: int = 300  # aisles; the first len(STAPLE_CATEGORIES) are the staples
    n_brands: int = 1_500
    start: dt.date = dt.date(2025, 1, 6)
    days: int = 365
    seed: int = 7
    trips_per_week: float = 0.65  # mean over households
    basket_min: int = 10
    basket_max: int = 30
    null_price_share: float = 0.10  # items without a price (catalog and events)
    malformed_rows_per_day: float = 0.0  # a real export: clean unless asked

    def __post_init__(self) -> None:
        """Fail on a config that cannot make a grocery shop, before any work is done."""
        if self.n_customers < 1 or self.days < 1 or self.n_brands < 1:
            raise ValueError("n_customers, n_brands and days must be at least 1")
        if self.n_categories <= len(STAPLE_CATEGORIES):
            raise ValueError(f"n_categories must be more than {len(STAPLE_CATEGORIES)}")
        if self.n_items < self.n_categories:
            raise ValueError("n_items must be at least n_categories (no empty category)")
        if not 1 <= self.basket_min <= self.basket_max:
            raise ValueError("need 1 <= basket_min <= basket_max")
        if self.n_items < 4 * self.basket_max:
            raise ValueError("n_items must be at least 4 x basket_max (baskets of distinct items)")
        if not self.trips_per_week > 0:
            raise ValueError("trips_per_week must be positive")
        if not 0.0 <= self.null_price_share <= 1.0:
            raise ValueError("null_price_share must be within [0, 1]")
        if not self.malformed_rows_per_day >= 0:
            raise ValueError("malformed_rows_per_day must be zero or more")


ShopConfig = SynthShopConfig | GroceryShopConfig


def _grocery_catalog(config: GroceryShopConfig, rng: np.random.Generator) -> _Catalog:
    """Aisles of lognormal size, Zipf popularity within an aisle, brands, some null prices."""
    n, k = config.n_items, config.n_categories
    size_weight = rng.lognormal(0.0, GROCERY_CATEGORY_SIZE_SIGMA, k)
    category = np.concatenate(
        [np.arange(k), rng.choice(k, n - k, p=size_weight / size_weight.sum())]
    )
    category = rng.permutation(category)
    aisle_median = np.exp(rng.normal(GROCERY_PRICE_LOG_MEAN, GROCERY_PRICE_SIGMA, k))
    price = aisle_median[category] * rng.lognormal(0.0, ITEM_PRICE_SIGMA, n)
    price = np.maximum(np.round(price, 2), 0.1)

    by_category = np.argsort(category, kind="stable")
    sizes = np.bincount(category, minlength=k)
    # Zipf weights by a random rank within the aisle, without a (aisles x widest) matrix.
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    aisle = category[by_category]
    position = np.empty(n)  # place of each sorted item among all, by (aisle, random key)
    position[np.argsort(aisle + rng.random(n), kind="stable")] = np.arange(n)
    weight = (position - offsets[aisle] + 1.0) ** -GROCERY_ZIPF_EXPONENT
    cum = np.cumsum(weight)
    ends = np.cumsum(sizes) - 1
    totals = cum[ends]
    before = np.concatenate([[0.0], totals[:-1]])
    share = (cum - before[aisle]) / (totals - before)[aisle]
    share[ends] = 1.0
    popularity_cdf = share + aisle

    brand = rng.integers(0, config.n_brands, n)
    no_price = rng.random(n) < config.null_price_share
    heads, tails = len(BRAND_HEADS), len(BRAND_TAILS)
    brand_names = [
        f"{BRAND_HEADS[b % heads]}{BRAND_TAILS[(b // heads) % tails]}"
        + (f" {b // (heads * tails) + 1}" if b >= heads * tails else "")
        for b in range(config.n_brands)
    ]
    category_names = [
        STAPLE_CATEGORIES[c]
        if c < len(STAPLE_CATEGORIES)
        else f"{DEPARTMENTS[c % len(DEPARTMENTS)]} {c + 1:03d}"
        for c in range(k)
    ]
    ids = _ids("p", np.arange(n), _width(n, 5))
    brands = pl.Series(BRAND, brand_names, dtype=pl.Utf8).gather(brand)
    aisles = pl.Series(CATEGORY, category_names, dtype=pl.Utf8).gather(category)
    frame = pl.DataFrame({ITEM_ID: ids, BRAND: brands, CATEGORY: aisles}).select(
        ITEM_ID,
        (pl.col(BRAND) + " " + pl.col(CATEGORY) + " #" + pl.col(ITEM_ID).str.slice(1)).alias(TITLE),
        CATEGORY,
        BRAND,
        pl.Series(PRICE, np.where(no_price, np.nan, price)).fill_nan(None),
    )
    return _Catalog(
        frame.cast(GROCERY_CATALOG_SCHEMA), category, price, by_category, popularity_cdf
    )


def _grocery_demand(config: GroceryShopConfig, rng: np.random.Generator) -> np.ndarray:
    """The chain's demand share per aisle: staple aisles well above the rest."""
    demand = rng.lognormal(0.0, GROCERY_DEMAND_SIGMA, config.n_categories)
    demand[: len(STAPLE_CATEGORIES)] = STAPLE_DEMAND
    return demand / demand.sum()


def _households(
    config: GroceryShopConfig, demand: np.ndarray, rng: np.random.Generator
) -> _Customers:
    """Tastes scattered around the chain's demand; `rate` is trips per week."""
    n = config.n_customers
    taste = rng.dirichlet(GROCERY_TASTE_CONCENTRATION * config.n_categories * demand, n)
    taste = np.nan_to_num(taste, nan=0.0)
    taste[taste.sum(axis=1) == 0] = demand  # guard against an all-underflow draw
    sigma = GROCERY_ACTIVITY_SIGMA
    rate = config.trips_per_week * rng.lognormal(-(sigma**2) / 2, sigma, n)
    return _Customers(taste, _grouped_cdf(taste), rate)


def _trips(
    config: GroceryShopConfig, households: _Customers, rng: np.random.Generator
) -> pl.DataFrame:
    """One row per trip: household, day, basket size, second of the day.

    A household does its weekly shop on its own weekday (most weeks) and tops up on others.
    """
    n = config.n_customers
    main_day = rng.choice(7, n, p=np.asarray(MAIN_WEEKDAY_WEIGHTS) / sum(MAIN_WEEKDAY_WEIGHTS))
    main_prob = np.minimum(MAIN_TRIP_SHARE * households.rate, MAX_MAIN_TRIP_PROB)
    topup_per_day = np.maximum(households.rate - main_prob, 0.0) / 7.0
    weekday = (config.start.weekday() + np.arange(config.days)) % 7
    u = rng.random((config.days, n))
    is_main = weekday[:, None] == main_day[None, :]
    went = np.where(is_main, u < main_prob[None, :], u < topup_per_day[None, :])
    day, household = np.nonzero(went)
    basket_mean = rng.uniform(*BASKET_MEAN_RANGE, n)
    size = np.rint(basket_mean[household] + rng.normal(0.0, BASKET_SD, household.size))
    size = np.clip(size, config.basket_min, config.basket_max)
    second = _seconds_into_day(rng, GROCERY_HOUR_WEIGHTS, household.size)
    return pl.DataFrame(
        {
            "trip": np.arange(household.size, dtype=np.int64),
            "customer": household.astype(np.int64),
            "day": day.astype(np.int64),
            "size": size.astype(np.int64),
            "second": second.astype(np.int64),
        }
    )


def _seconds_into_day(rng: np.random.Generator, hour_weights: tuple, n: int) -> np.ndarray:
    """`n` start times in seconds after midnight: an hour by `hour_weights`, then a second."""
    hours = np.asarray(hour_weights, dtype=float)
    hour = rng.choice(24, size=n, p=hours / hours.sum())
    return hour * 3600 + rng.integers(0, 3600, n)


def _grocery_staples(
    config: GroceryShopConfig,
    households: _Customers,
    catalog: _Catalog,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Each household's staples (customer, item, chance per trip): one brand per staple aisle
    it buys, plus a few personal ones from its own aisles."""
    n, s = config.n_customers, len(STAPLE_CATEGORIES)
    adopts = rng.random((n, s)) < STAPLE_ADOPTION
    customer, aisle = np.nonzero(adopts)
    personal = rng.poisson(PERSONAL_STAPLES, n)
    own = np.repeat(np.arange(n), personal)
    customer = np.concatenate([customer, own])
    aisle = np.concatenate([aisle, _draw_categories(households, own, rng)])
    item = _draw_items(catalog, aisle, rng)
    chance = rng.beta(*STAPLE_BUY_BETA, customer.size)
    return (
        pl.DataFrame({"customer": customer.astype(np.int64), "item": item.astype(np.int64)})
        .with_columns(pl.Series("chance", chance))
        .unique(subset=["customer", "item"], keep="first", maintain_order=True)
        .sort("customer", "item")
    )


def _repertoires(
    config: GroceryShopConfig,
    households: _Customers,
    catalog: _Catalog,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items each household habitually picks from: (items by household, offset, count)."""
    count = REPERTOIRE_BASE + rng.poisson(REPERTOIRE_EXTRA, config.n_customers)
    customer = np.repeat(np.arange(config.n_customers), count)
    item = _draw_items(catalog, _draw_categories(households, customer, rng), rng)
    offset = np.concatenate([[0], np.cumsum(count)[:-1]])
    return item, offset, count


def _basket_lines(
    trips: pl.DataFrame,
    staples: pl.DataFrame,
    repertoire: tuple[np.ndarray, np.ndarray, np.ndarray],
    households: _Customers,
    catalog: _Catalog,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Distinct items of every trip, exactly `size` of them: staples first, then fill lines.

    Fill lines come from the household's repertoire or, to explore, from its aisles by item
    popularity. Draws that repeat an item already in the basket are dropped and redrawn.
    """
    staple_lines = trips.select("trip", "customer").join(
        staples, on="customer", how="inner", maintain_order="left"
    )
    bought = pl.Series(rng.random(staple_lines.height)) < staple_lines["chance"]
    staple_lines = staple_lines.filter(bought)
    lines = _keep_basket(
        staple_lines.select(
            "trip",
            "item",
            pl.lit(True).alias("staple"),
            pl.Series("order", rng.random(staple_lines.height)),
        ),
        trips,
    )
    items, offset, count = repertoire
    sizes = trips["size"].to_numpy()
    customer_of = trips["customer"].to_numpy()
    for _ in range(100):  # a round rarely leaves a basket short; a few rounds fill it
        have = np.bincount(lines["trip"].to_numpy(), minlength=trips.height)
        need = np.maximum(sizes - have, 0)
        if not need.any():
            break
        draws = np.where(need > 0, need + BASKET_OVERSAMPLE, 0)
        trip = np.repeat(np.arange(trips.height), draws)
        customer = customer_of[trip]
        habitual = rng.random(trip.size) < REPERTOIRE_SHARE
        picked = items[offset[customer] + (rng.random(trip.size) * count[customer]).astype(int)]
        explored = _draw_items(catalog, _draw_categories(households, customer, rng), rng)
        fill = pl.DataFrame(
            {
                "trip": trip.astype(np.int64),
                "item": np.where(habitual, picked, explored).astype(np.int64),
                "staple": np.zeros(trip.size, dtype=bool),
                "order": 1.0 + rng.random(trip.size),
            }
        )
        lines = _keep_basket(
            pl.concat([lines, fill]).unique(
                subset=["trip", "item"], keep="first", maintain_order=True
            ),
            trips,
        )
    short = int((np.bincount(lines["trip"].to_numpy(), minlength=trips.height) < sizes).sum())
    if short:
        raise RuntimeError(f"{short} grocery baskets could not be filled with distinct items")
    return lines.drop("order")


def _keep_basket(lines: pl.DataFrame, trips: pl.DataFrame) -> pl.DataFrame:
    """The first `size` lines of each trip by `order`; kept lines then come before new draws."""
    return (
        lines.sort("trip", "order", maintain_order=True)
        .with_columns(pl.int_range(pl.len()).over("trip").alias("_n"))
        .join(trips.select("trip", "size"), on="trip", how="left", maintain_order="left")
        .filter(pl.col("_n") < pl.col("size"))
        .drop("_n", "size")
        .with_columns(pl.lit(0.0).alias("order"))
    )


def _generate_grocery(config: GroceryShopConfig) -> SyntheticShop:
    """Draw a grocery chain from config.seed: catalog, households, trips and their baskets."""
    rng = np.random.default_rng(config.seed)
    catalog = _grocery_catalog(config, rng)
    households = _households(config, _grocery_demand(config, rng), rng)
    trips = _trips(config, households, rng)
    staples = _grocery_staples(config, households, catalog, rng)
    repertoire = _repertoires(config, households, catalog, rng)
    lines = _basket_lines(trips, staples, repertoire, households, catalog, rng)

    extra = np.where(
        lines["staple"].to_numpy(), GROCERY_STAPLE_EXTRA_QUANTITY, GROCERY_EXTRA_QUANTITY
    )
    item = lines["item"].to_numpy()
    list_price = catalog.frame[PRICE].to_numpy()[item]  # NaN where the item has no price
    promo = rng.random(lines.height) < PROMO_SHARE
    paid = np.round(np.where(promo, list_price * PROMO_FACTOR, list_price), 2)
    base = np.datetime64(config.start, "us")
    timed = (
        trips.with_columns(
            (pl.lit(base) + pl.duration(seconds=pl.col("day") * SECONDS_PER_DAY + pl.col("second")))
            .cast(pl.Datetime("us"))
            .alias(TS)
        )
        .sort(TS, "customer", "trip")
        .with_row_index("order_rank")
        .with_columns(_id_expr("o", "order_rank", _width(trips.height, 7)).alias(ORDER_ID))
        .select("trip", "customer", TS, ORDER_ID)
    )
    events = (
        lines.with_columns(
            pl.Series(QUANTITY, 1 + rng.poisson(extra), dtype=pl.Int64),
            pl.Series(PRICE, paid, dtype=pl.Float64).fill_nan(None),
        )
        .join(timed, on="trip", how="left", maintain_order="left")
        .with_columns(
            _id_expr("h", "customer", _width(config.n_customers, 5)).alias(USER_ID),
            _id_expr("p", "item", _width(config.n_items, 5)).alias(ITEM_ID),
            pl.lit(PURCHASE).alias(EVENT_TYPE),
            pl.lit(None, pl.Utf8).alias(SESSION_ID),
        )
        .sort(TS, ORDER_ID, ITEM_ID)
    )
    return SyntheticShop(
        events=events.select(EVENT_COLUMNS).cast(EVENTS_SCHEMA),
        catalog=catalog.frame,
        config=config,
    )


# --- landing files -------------------------------------------------------------------------


def _as_text(events: pl.DataFrame, config: ShopConfig) -> pl.DataFrame:
    """Events as the text a landing file holds, with their day index and in-day position."""
    start = dt.datetime.combine(config.start, dt.time())
    return events.select(
        pl.col(USER_ID),
        pl.col(ITEM_ID),
        pl.col(EVENT_TYPE),
        pl.col(TS).dt.strftime(TS_FORMAT).alias(TS),
        pl.col(QUANTITY).cast(pl.Utf8),
        pl.col(PRICE).cast(pl.Utf8),
        pl.col(ORDER_ID),
        pl.col(SESSION_ID),
        ((pl.col(TS) - pl.lit(start)).dt.total_days()).cast(pl.Int64).alias("_day"),
    ).with_columns(pl.int_range(pl.len()).over("_day").cast(pl.Float64).alias("_position"))


def _malformed(shop: SyntheticShop, good_per_day: np.ndarray) -> pl.DataFrame:
    """Bad rows per day file: a Poisson count, each a view (a grocery shop: a purchase) with
    exactly one field broken.

    Drawn from a second stream of the seed so the clean shop does not depend on them.
    """
    config = shop.config
    grocery = isinstance(config, GroceryShopConfig)
    user_prefix = "h" if grocery else "u"
    event_type = PURCHASE if grocery else VIEW
    rng = np.random.default_rng([config.seed, MALFORMED_SEED_TAG])
    counts = rng.poisson(config.malformed_rows_per_day, config.days)
    day = np.repeat(np.arange(config.days), counts)
    n = day.size
    kind = np.asarray(MALFORMED_KINDS)[rng.integers(0, len(MALFORMED_KINDS), n)]
    item = rng.integers(0, config.n_items, n)
    second = rng.integers(0, SECONDS_PER_DAY, n)
    when = np.datetime64(config.start, "s") + (day * SECONDS_PER_DAY + second).astype(
        "timedelta64[s]"
    )
    frame = pl.DataFrame(
        {
            USER_ID: _ids(
                user_prefix, rng.integers(0, config.n_customers, n), _width(config.n_customers, 5)
            ),
            ITEM_ID: shop.catalog[ITEM_ID].gather(item),
            EVENT_TYPE: pl.Series([event_type] * n, dtype=pl.Utf8),
            TS: pl.Series(when.astype("datetime64[us]")).dt.strftime(TS_FORMAT),
            QUANTITY: pl.Series(["1"] * n, dtype=pl.Utf8),
            PRICE: shop.catalog[PRICE].gather(item).cast(pl.Utf8),  # empty when unpriced
            ORDER_ID: pl.Series([None] * n, dtype=pl.Utf8),
            SESSION_ID: pl.Series([None] * n, dtype=pl.Utf8),
            "_day": day.astype(np.int64),
            "_position": rng.random(n) * (good_per_day[day] + 1) - 0.5,
            "_kind": kind,
        }
    )
    broken = {
        TS: (BAD_TIMESTAMP, pl.lit("not-a-time")),
        QUANTITY: (BAD_QUANTITY, pl.lit("abc")),
        EVENT_TYPE: (UNKNOWN_EVENT_TYPE, pl.lit("click")),
        USER_ID: (MISSING_USER_ID, pl.lit(None, pl.Utf8)),
    }
    return frame.with_columns(
        pl.when(pl.col("_kind") == name).then(value).otherwise(pl.col(column)).alias(column)
        for column, (name, value) in broken.items()
    )


def _write_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write a CSV via a temp file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_csv(tmp)
    os.replace(tmp, path)


def write_landing(shop: SyntheticShop, landing_dir: Path) -> LandingReport:
    """Writes landing_dir/catalog.csv and landing_dir/events/YYYY-MM-DD.csv, one per day.

    The catalog keeps the shop's columns (a grocery catalog adds `brand`); a missing price is
    an empty cell, in the catalog and in the event files, as real exports write it.

    Every day of the range gets a file (possibly header-only). Malformed rows are mixed in
    at random positions. Day files in landing_dir/events outside this shop's range are
    removed, so the folder holds exactly this shop and re-running yields the same content.
    """
    config = shop.config
    events_dir = Path(landing_dir) / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    catalog_path = Path(landing_dir) / "catalog.csv"
    grocery = isinstance(config, GroceryShopConfig)
    columns = GROCERY_CATALOG_COLUMNS if grocery else CATALOG_COLUMNS
    _write_atomic(shop.catalog.select(columns), catalog_path)

    good = _as_text(shop.events, config)
    good_per_day = np.bincount(good["_day"].to_numpy(), minlength=config.days)
    bad = _malformed(shop, good_per_day)
    rows = pl.concat([good, bad.drop("_kind")]).sort("_day", "_position")
    by_day = rows.partition_by("_day", as_dict=True, include_key=False)
    empty = rows.clear()

    days = [config.start + dt.timedelta(days=d) for d in range(config.days)]
    files = [events_dir / f"{day.isoformat()}.csv" for day in days]
    for d, path in enumerate(files):
        _write_atomic(by_day.get((d,), empty).select(EVENT_COLUMNS), path)
    written = set(files)
    for stale in events_dir.iterdir():
        if EVENT_FILE.match(stale.name) and stale not in written:
            stale.unlink()

    kinds = bad["_kind"].value_counts()
    found = dict(zip(kinds["_kind"].to_list(), kinds["count"].to_list(), strict=True))
    return LandingReport(
        files=files,
        catalog_path=catalog_path,
        malformed_rows={kind: int(found.get(kind, 0)) for kind in MALFORMED_KINDS},
        rows_written=rows.height,
    )
