"""Customer shards: per-customer work (candidates, features, scoring, top-K) runs a shard of
customers at a time, so its memory follows the shard, not the shop.

A customer's shard is a hash of their id. Every per-customer result depends on the
customer's own events and on aggregates shared by all (`SharedAggregates`), so the shard
count changes how the work is cut, never what it computes.
"""

from __future__ import annotations

import math

import polars as pl

from tasks.constants import USER_ID

# Fixed, so a customer stays in one shard across runs of the same Polars version; shards only
# cut the work, so another version's different cut changes no result.
SHARD_SEED = 20_261_130
# Peak bytes per candidate row while a shard's candidates and features are built, checked
# (the contract validates a pandas copy) and scored: about 640 measured for candidates and
# features alone (437,675 rows of 57 columns, 2,974 customers of the synthetic web shop),
# about twice that with the check's copy.
CANDIDATE_ROW_BYTES = 1_200
# The same with a network scoring the shard (the neural and blend kinds): its tensors of the
# shard's rows come on top. Measured on the 1M-event synthetic shop (benchmarks/scale.py):
# a blend's scoring day peaked at 2,848 MiB against 1,716 for LightGBM with the same shards
# (2 of 4,842 customers, 150 candidates each), about 1,600 bytes more per row.
NETWORK_ROW_BYTES = 2_800


SAMPLE_SEED = 20_261_201
_SAMPLE_BUCKETS = 1_000_000


def sample_fraction(n_users: int, cap: int) -> float:
    """The share of customers a training keeps so that about `cap` of `n_users` remain."""
    return 1.0 if n_users <= cap else cap / n_users


def in_sample(fraction: float) -> pl.Expr:
    """True for the customers in a hash sample of about `fraction` of all: the same customers
    in every window and in the validation set (a customer's draw is a hash of their id)."""
    if fraction >= 1.0:
        return pl.lit(True)
    bucket = pl.col(USER_ID).hash(seed=SAMPLE_SEED) % _SAMPLE_BUCKETS
    return bucket < int(fraction * _SAMPLE_BUCKETS)


def sampled(users: pl.Series, fraction: float) -> pl.Series:
    """`users` (a sorted Series of ids) restricted to the hash sample."""
    if fraction >= 1.0:
        return users
    return pl.DataFrame({USER_ID: users}).filter(in_sample(fraction)).get_column(USER_ID)


def shard_of(n_shards: int) -> pl.Expr:
    """The shard (0 .. n_shards - 1) of each row's customer."""
    return (pl.col(USER_ID).hash(seed=SHARD_SEED) % n_shards).cast(pl.Int32)


def shard_count(
    n_users: int, rows_per_user: int, budget_mib: int, row_bytes: int = CANDIDATE_ROW_BYTES
) -> int:
    """Shards needed so that one shard's candidate rows, at `row_bytes` each while they are
    built, checked and scored, fit `budget_mib`."""
    per_shard = max(1, budget_mib * 2**20 // (rows_per_user * row_bytes))
    return max(1, math.ceil(n_users / per_shard))


def shard_users(users: pl.Series, n_shards: int) -> list[pl.Series]:
    """`users` cut into `n_shards` shards, each sorted."""
    frame = pl.DataFrame({USER_ID: users}).with_columns(shard_of(n_shards).alias("_shard"))
    return [frame.filter(pl.col("_shard") == i).get_column(USER_ID).sort() for i in range(n_shards)]
