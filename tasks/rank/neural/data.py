"""Tensors for the neural ranker, built from Polars columns without Python loops over rows.

A training frame holds one row per (customer list, candidate). Lists are padded to the longest
one and gathered per batch through an index matrix (`rows`, -1 = padding), so a batch is a few
tensor gathers. Each list also carries the customer's most recent purchased items before its
as-of moment (newest first), for the sequence encoder.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch

from tasks.constants import EVENT_TYPE, ITEM_ID, PURCHASE, TS, USER_ID
from tasks.timeutil import events_before

PAD = 0  # item index of padding in sequences
UNKNOWN = 1  # item index of an item the vocabulary does not hold
CLIP = 8.0  # standardised values beyond this many deviations are outliers, not signal
USER_HASH_SEED = 17


@dataclass(frozen=True)
class Preprocessor:
    """What turns a candidate frame into network inputs; fitted on training data only.

    Numeric features go through a signed log1p (counts and spends are heavy-tailed) and are
    then standardised; a null becomes 0 plus a 1 in that feature's indicator column.
    """

    features: list[str]
    center: list[float]
    scale: list[float]
    null_features: list[str]
    items: list[str]  # vocabulary; item i has index i + 2
    user_buckets: int
    seq_len: int

    @property
    def n_dense(self) -> int:
        return len(self.features) + len(self.null_features)

    @property
    def n_items(self) -> int:
        return len(self.items) + 2

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        return cls(**json.loads(text))


def _signed_log(name: str) -> pl.Expr:
    x = pl.col(name).cast(pl.Float64)
    return (x.sign() * x.abs().log1p()).fill_nan(None)


def fit_preprocessor(
    train: pl.DataFrame,
    features: list[str],
    events: pl.DataFrame,
    user_buckets: int,
    seq_len: int,
) -> Preprocessor:
    """Statistics of `train`'s features and the vocabulary of items purchased in `events`."""
    logged = train.select(
        [_signed_log(f).replace([float("inf"), float("-inf")], None).alias(f) for f in features]
    )
    means = logged.mean().row(0)
    stds = logged.std().row(0)
    nulls = train.select(pl.col(features).is_null().any()).row(0)
    items = (
        events.filter(pl.col(EVENT_TYPE) == PURCHASE).get_column(ITEM_ID).unique().sort().to_list()
    )
    return Preprocessor(
        features=list(features),
        center=[float(m) if m is not None else 0.0 for m in means],
        scale=[float(s) if s is not None and s > 1e-9 else 1.0 for s in stds],
        null_features=[f for f, has_null in zip(features, nulls, strict=True) if has_null],
        items=items,
        user_buckets=user_buckets,
        seq_len=seq_len,
    )


def dense_matrix(frame: pl.DataFrame, prep: Preprocessor) -> np.ndarray:
    """[rows, n_dense] float32: standardised features, then null indicators."""
    scaled = [
        ((_signed_log(f) - c) / s).fill_null(0.0).clip(-CLIP, CLIP).alias(f)
        for f, c, s in zip(prep.features, prep.center, prep.scale, strict=True)
    ]
    flags = [pl.col(f).is_null().cast(pl.Float32).alias(f"{f}__null") for f in prep.null_features]
    return frame.select([*scaled, *flags]).to_numpy().astype(np.float32, copy=False)


def item_index(items: pl.Series, prep: Preprocessor) -> np.ndarray:
    """Vocabulary index of each item id (UNKNOWN for items the model never saw)."""
    vocab = pl.DataFrame(
        {ITEM_ID: prep.items, "_idx": np.arange(2, prep.n_items, dtype=np.int64)},
        schema={ITEM_ID: items.dtype, "_idx": pl.Int64},
    )
    return (
        pl.DataFrame({ITEM_ID: items})
        .join(vocab, on=ITEM_ID, how="left", maintain_order="left")
        .get_column("_idx")
        .fill_null(UNKNOWN)
        .to_numpy()
        .copy()  # writable, for torch.from_numpy
    )


def user_bucket(users: pl.Series, prep: Preprocessor) -> np.ndarray:
    """Hashed customer embedding row in 1..user_buckets (0 is never used)."""
    hashed = users.hash(seed=USER_HASH_SEED).to_numpy()
    return (hashed % np.uint64(prep.user_buckets)).astype(np.int64) + 1


def recent_items(
    events: pl.DataFrame, lists: pl.DataFrame, as_of_col: str, prep: Preprocessor
) -> np.ndarray:
    """[len(lists), seq_len] item indices: each list's customer's most recent distinct purchased
    items strictly before that list's as-of moment, newest first, PAD-filled.

    `lists` has one row per list: user_id and the as-of moment in `as_of_col`.
    """
    out = np.zeros((lists.height, prep.seq_len), dtype=np.int64)
    keyed = lists.select(USER_ID, as_of_col).with_row_index("_list")
    purchases = events.filter(pl.col(EVENT_TYPE) == PURCHASE).select(USER_ID, ITEM_ID, TS)
    # One pass per distinct as-of moment (a handful of windows), each point in time.
    for (as_of,), group in keyed.group_by(as_of_col, maintain_order=True):
        seq = (
            events_before(purchases, as_of)
            .join(group.select(USER_ID, "_list"), on=USER_ID)
            .group_by("_list", ITEM_ID)
            .agg(pl.col(TS).max())
            .sort(["_list", TS, ITEM_ID], descending=[False, True, False])
            .with_columns(pl.int_range(pl.len()).over("_list").alias("_pos"))
            .filter(pl.col("_pos") < prep.seq_len)
        )
        if seq.height:
            idx = item_index(seq.get_column(ITEM_ID), prep)
            out[seq.get_column("_list").to_numpy(), seq.get_column("_pos").to_numpy()] = idx
    return out


def _tensor(array: np.ndarray) -> torch.Tensor:
    # Arrow-backed numpy arrays are read-only; copy only when that or the layout requires it.
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))


@dataclass(frozen=True)
class ListTensors:
    """Candidate rows (flat) and the lists they form (padded index matrix)."""

    dense: torch.Tensor  # [rows, n_dense] float32
    item: torch.Tensor  # [rows] int64
    label: torch.Tensor  # [rows] float32 (zeros when unlabelled)
    rows: torch.Tensor  # [lists, max_len] int64 row index, -1 = padding
    user: torch.Tensor  # [lists] int64 hashed bucket
    seq: torch.Tensor  # [lists, seq_len] int64 recent items, PAD-filled

    @property
    def n_lists(self) -> int:
        return int(self.rows.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.dense.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in self.__dict__.values())

    @classmethod
    def concat(cls, parts: list[ListTensors]) -> ListTensors:
        """The parts' lists one after another (their rows renumbered, padding widened): the
        tensors of several windows built once each and combined for every fit that uses them."""
        width = max(int(p.rows.shape[1]) for p in parts)
        rows, offset = [], 0
        for p in parts:
            padded = torch.full((p.n_lists, width), -1, dtype=torch.int64)
            padded[:, : p.rows.shape[1]] = torch.where(p.rows >= 0, p.rows + offset, p.rows)
            rows.append(padded)
            offset += p.n_rows
        return cls(
            dense=torch.cat([p.dense for p in parts]),
            item=torch.cat([p.item for p in parts]),
            label=torch.cat([p.label for p in parts]),
            rows=torch.cat(rows),
            user=torch.cat([p.user for p in parts]),
            seq=torch.cat([p.seq for p in parts]),
        )

    def to(self, device: torch.device) -> ListTensors:
        return ListTensors(*(t.to(device) for t in self.__dict__.values()))

    def lists_with_positive(self) -> torch.Tensor:
        """[lists] bool: the list has a relevant row (computed where the tensors are)."""
        positive = torch.cat([self.label > 0, torch.zeros(1, dtype=torch.bool)])
        return positive[self.rows.clamp(min=-1)].any(dim=1)

    def batch(self, lists: torch.Tensor) -> dict[str, torch.Tensor]:
        """The padded inputs of the given lists: gathers only."""
        rows = self.rows[lists]
        mask = rows >= 0
        safe = rows.clamp(min=0)
        return {
            "dense": self.dense[safe],
            "item": self.item[safe],
            "label": self.label[safe] * mask,
            "mask": mask,
            "user": self.user[lists],
            "seq": self.seq[lists],
            "rows": rows,
        }


def build_tensors(
    frame: pl.DataFrame,
    events: pl.DataFrame,
    prep: Preprocessor,
    list_key: str = USER_ID,
    as_of: dt.datetime | str = "_as_of",
    label: str | None = "label",
) -> ListTensors:
    """Tensors for `frame` (rows keep their order). Lists are the distinct `list_key` values;
    `as_of` is a column holding each row's as-of moment, or one moment for the whole frame."""
    as_of_col = "_nn_as_of"
    keyed = frame.select(
        pl.col(list_key).alias("_list_key"),
        pl.col(USER_ID),
        (pl.col(as_of) if isinstance(as_of, str) else pl.lit(as_of)).alias(as_of_col),
    ).with_columns(
        pl.col("_list_key").rank("dense").cast(pl.Int64).sub(1).alias("_list"),
        pl.int_range(pl.len()).over("_list_key").alias("_pos"),
    )
    lists = keyed.group_by("_list").agg(pl.col(USER_ID).first(), pl.col(as_of_col).first())
    lists = lists.sort("_list")
    list_id = keyed.get_column("_list").to_numpy()
    pos = keyed.get_column("_pos").to_numpy()
    max_len = int(pos.max()) + 1 if frame.height else 1
    rows = np.full((lists.height, max_len), -1, dtype=np.int64)
    rows[list_id, pos] = np.arange(frame.height, dtype=np.int64)
    labels = (
        frame.get_column(label).cast(pl.Float32).to_numpy()
        if label is not None and label in frame.columns
        else np.zeros(frame.height, dtype=np.float32)
    )
    return ListTensors(
        dense=_tensor(dense_matrix(frame, prep)),
        item=torch.from_numpy(item_index(frame.get_column(ITEM_ID), prep)),
        label=_tensor(labels),
        rows=torch.from_numpy(rows),
        user=torch.from_numpy(user_bucket(lists.get_column(USER_ID), prep)),
        seq=torch.from_numpy(recent_items(events, lists, as_of_col, prep)),
    )
