"""What ingestion does with customer ids: the store's id mode, pseudonyms and the erasure list.

A store holds either the shop's ids (`raw`) or pseudonyms (`pseudonymized`), recorded in
`privacy_state` when the first rows arrive; a store is never mixed: ingesting with the other
mode is refused, as is a key whose fingerprint differs from the one the store recorded. The
erasure list (keyed hashes in `erasures`) keeps erased customers out of every later ingestion:
their rows are filtered and counted under the reason `erased`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from tasks.privacy.keys import PrivacyError, PrivacyKey, erasure_key, pseudonym_key
from tasks.settings import PrivacySettings
from tasks.store import sql_text

RAW, PSEUDONYMIZED = "raw", "pseudonymized"
MODE = "ids"
PSEUDONYM_KEY = "pseudonym_key_fingerprint"
ERASURE_KEY = "erasure_key_fingerprint"
ERASED = "erased"  # the filtered reason of an erased customer's rows


class MixedStore(PrivacyError):
    hint = (
        "a store keeps one kind of id: use a fresh NIGHTREC_HOME for the other mode, "
        "or set privacy.pseudonymize back"
    )


class KeyChanged(PrivacyError):
    hint = "set NIGHTREC_PRIVACY__KEY back to the key this store was used with"


def _state(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, str], int]:
    rows = con.execute(sql_text("privacy_state_read")).fetchall()
    recorded = {name: value for name, value, _ in rows if name is not None}
    return recorded, rows[0][2]


def _record(con: duckdb.DuckDBPyConnection, name: str, value: str) -> None:
    con.execute(sql_text("privacy_state"), {"name": name, "value": value})


def check_key(con: duckdb.DuckDBPyConnection, name: str, key: PrivacyKey, what: str) -> None:
    """Record the key's fingerprint under `name`, or refuse a key that differs from it."""
    recorded, _ = _state(con)
    if name not in recorded:
        _record(con, name, key.fingerprint)
    elif recorded[name] != key.fingerprint:
        raise KeyChanged(
            f"the privacy key differs from the one this store's {what} were made with "
            f"(fingerprint {key.fingerprint} != {recorded[name]})"
        )


def check_mode(con: duckdb.DuckDBPyConnection, privacy: PrivacySettings) -> str:
    """The store's id mode, recorded when first seen; refuses a mode that differs from it."""
    wanted = PSEUDONYMIZED if privacy.pseudonymize else RAW
    recorded, n_rows = _state(con)
    mode = recorded.get(MODE)
    if mode is None:  # rows without a recorded mode came before this check: raw ids
        mode = RAW if n_rows else wanted
        _record(con, MODE, mode)
    if mode != wanted:
        raise MixedStore(
            f"this store holds {mode} customer ids but privacy.pseudonymize is "
            f"{'on' if privacy.pseudonymize else 'off'}: a store is never mixed"
        )
    key = pseudonym_key(privacy)
    if key is not None:
        check_key(con, PSEUDONYM_KEY, key, "pseudonyms")
    return mode


def erased_hashes(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    return frozenset(h for (h,) in con.execute(sql_text("erasures_hashes")).fetchall())


@dataclass(frozen=True)
class IdGuard:
    """Applied to each raw chunk before its adapter: erased customers' rows are marked (and
    later counted as filtered), and with pseudonyms on, the customer column is replaced by the
    pseudonym, so nothing downstream (quarantined raw rows included) sees the shop's id."""

    pseudonyms: PrivacyKey | None = field(default=None, repr=False)
    erasure: PrivacyKey | None = field(default=None, repr=False)
    erased: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return self.pseudonyms is not None or bool(self.erased)

    def apply(
        self, raw: pl.DataFrame, column: str, normalise: Callable[[pl.Expr], pl.Expr]
    ) -> tuple[pl.DataFrame, pl.Series | None]:
        """(the chunk with pseudonyms in `column`, a mask of erased customers' rows or None).
        `normalise` turns the raw column into the id the adapter would load."""
        if not self.active or column not in raw.columns:
            return raw, None
        ids = raw.select(normalise(pl.col(column)).alias("id")).get_column("id")
        unique = ids.drop_nulls().unique().to_list()
        mask = None
        if self.erased:
            assert self.erasure is not None
            gone = [u for u in unique if self.erasure.erasure_hash(u) in self.erased]
            if gone:
                mask = ids.is_in(pl.Series(gone, dtype=pl.Utf8).implode()).fill_null(False)
        if self.pseudonyms is not None:
            mapping = {u: self.pseudonyms.pseudonym(u) for u in unique}
            pseudonyms = ids.replace_strict(mapping, default=None, return_dtype=pl.Utf8)
            raw = raw.with_columns(
                pl.when(pseudonyms.is_not_null())
                .then(pseudonyms)
                .otherwise(pl.col(column))
                .alias(column)
            )
        return raw, mask


def bind_guard(con: duckdb.DuckDBPyConnection, privacy: PrivacySettings, home: Path) -> IdGuard:
    """Check the store's id mode and keys, and load the erasure list (see the module)."""
    check_mode(con, privacy)
    erased = erased_hashes(con)
    key = None
    if erased:
        key = erasure_key(privacy, home)
        if key is None:
            raise KeyChanged(
                "this store has an erasure list but its key is gone (no privacy.key and no "
                f"{home / 'privacy.key'})"
            )
        check_key(con, ERASURE_KEY, key, "erasure hashes")
    return IdGuard(pseudonym_key(privacy), key, erased)
