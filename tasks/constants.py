"""Column names, event types and protocol constants shared by every stage.

One module so that a rename or a protocol change happens in one place (DESIGN.md, habit 6).
"""

from __future__ import annotations

from typing import Final

# Canonical event schema (DESIGN.md, "Interfaces others rely on").
USER_ID: Final = "user_id"
ITEM_ID: Final = "item_id"
EVENT_TYPE: Final = "event_type"
TS: Final = "ts"
QUANTITY: Final = "quantity"
PRICE: Final = "price"
ORDER_ID: Final = "order_id"
SESSION_ID: Final = "session_id"

EVENT_COLUMNS: Final = (USER_ID, ITEM_ID, EVENT_TYPE, TS, QUANTITY, PRICE, ORDER_ID, SESSION_ID)
# A landing file must carry these; quantity (default 1) and price (null) may be absent.
REQUIRED_EVENT_COLUMNS: Final = (USER_ID, ITEM_ID, EVENT_TYPE, TS)

VIEW: Final = "view"
CART: Final = "cart"
PURCHASE: Final = "purchase"
EVENT_TYPES: Final = (VIEW, CART, PURCHASE)

# Catalog schema.
TITLE: Final = "title"
CATEGORY: Final = "category"
BRAND: Final = "brand"
CATALOG_COLUMNS: Final = (ITEM_ID, TITLE, CATEGORY, PRICE)
# What a catalog file may carry (item_id required) and what the store keeps per item besides.
CATALOG_FILE_COLUMNS: Final = (ITEM_ID, TITLE, CATEGORY, BRAND, PRICE)
FIRST_SEEN: Final = "first_seen"
LAST_SEEN: Final = "last_seen"
PRICE_SEEN_AT: Final = "price_seen_at"  # ts of the event a derived price comes from
CATALOG_ORIGIN: Final = "origin"  # file (a catalog file) | events (derived from events)

# Published output schema.
RANK: Final = "rank"
SCORE: Final = "score"
MODEL_VERSION: Final = "model_version"
RUN_ID: Final = "run_id"
REC_SOURCE: Final = "source"
# Why a row was recommended (tasks/explain): a short code, a sentence for the reader, and the
# model's top feature contributions ("name:+0.412;name:-0.108", null when not computed).
REASON: Final = "reason"
REASON_DETAIL: Final = "reason_detail"
REASON_FEATURES: Final = "reason_features"
OUTPUT_COLUMNS: Final = (
    USER_ID,
    ITEM_ID,
    RANK,
    SCORE,
    MODEL_VERSION,
    RUN_ID,
    REC_SOURCE,
    REASON,
    REASON_DETAIL,
    REASON_FEATURES,
)
# The reason codes a published row may carry (the recommendations contract checks them).
REPURCHASE: Final = "repurchase"
VIEWED: Final = "viewed"
BOUGHT_TOGETHER: Final = "bought-together"
SIMILAR_ITEM: Final = "similar-item"
TRENDING: Final = "trending"
POPULAR_IN_CATEGORY: Final = "popular-in-category"
POPULAR: Final = "popular"
FALLBACK: Final = "fallback"
REASONS: Final = (
    REPURCHASE,
    VIEWED,
    BOUGHT_TOGETHER,
    SIMILAR_ITEM,
    TRENDING,
    POPULAR_IN_CATEGORY,
    POPULAR,
    FALLBACK,
)
MANIFEST_NAME: Final = "_manifest.json"

# Evaluation protocol (DESIGN.md, "Evaluation protocol").
DEFAULT_K: Final = 10
EVAL_KS: Final = (10, 20)
DEFAULT_HORIZON_DAYS: Final = 30

# 16 MiB: the peak memory of ingestion grows by about 20 MiB per MiB of chunk (Polars frames,
# pandas copies for the contract) while larger chunks are no faster
# (benchmarks/results/ingest_memory_chunks.md).
DEFAULT_CHUNK_BYTES = 16 * 2**20

# The item features' buyer windows (tasks/features/build.py); the longest bounds how far back
# the features look from an as-of (README, "Privacy": retention must cover it).
ITEM_BUYER_WINDOWS_DAYS: Final = (7, 30, 90)

# Files and folders nightrec creates are its owner's only (0600 / 0700): the umask the CLI and
# the flows set when they start (never at import).
OWNER_ONLY_UMASK: Final = 0o077
