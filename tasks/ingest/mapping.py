"""Column mapping: load a shop's own export column names without a conversion script.

A YAML file `nightrec_columns.yml` beside the landing files (or given with
`nightrec ingest --columns FILE`) maps each column the source adapter knows to the export's
column, or gives it one constant value for every row:

    user_id: household_key
    item_id: PRODUCT_ID
    ts: DAY
    quantity: QUANTITY
    price: SALES_VALUE
    event_type: {value: purchase}   # the export has no event type: every row is a purchase

The mapping is applied to each chunk as it is read, before the adapter, so quarantined rows
keep the mapped names and `nightrec quarantine replay` needs no mapping. Columns the mapping
does not name pass through unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from tasks.ingest.landing import COLUMNS_FILE, IngestError, side_folders

HINT_MAPPING = f"fix the column mapping ({COLUMNS_FILE}, or the file given with --columns)"


@dataclass(frozen=True)
class ColumnMapping:
    """canonical name -> export column, and canonical name -> constant value."""

    path: Path
    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A digest of what the mapping does (not of its file's layout or comments)."""
        text = json.dumps([self.columns, self.constants], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def apply(self, raw: pl.DataFrame, file: Path) -> pl.DataFrame:
        """`raw` with the export's columns renamed to canonical ones and the constants added."""
        missing = [(k, v) for k, v in self.columns.items() if v not in raw.columns]
        if missing:
            target, column = missing[0]
            raise IngestError(
                f"{file}: column {column!r} (mapped to {target} by {self.path}) is not in the "
                f"file (found: {', '.join(raw.columns) or 'none'})",
                hint=HINT_MAPPING,
            )
        targets = set(self.columns) | set(self.constants)
        # An export column that already carries a canonical name the mapping fills otherwise
        # is shadowed by the mapping.
        shadowed = [c for c in raw.columns if c in targets and self.columns.get(c) != c]
        frame = raw.drop(shadowed).rename(
            {source: target for target, source in self.columns.items() if source != target}
        )
        return frame.with_columns(
            pl.lit(value, dtype=pl.Utf8).alias(target) for target, value in self.constants.items()
        )


def load_mapping(path: Path, known: tuple[str, ...]) -> ColumnMapping:
    """Read and check a mapping file; every problem is one IngestError line naming the file."""
    if not path.is_file():
        raise IngestError(f"{path}: no such column mapping file", hint="check --columns")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise IngestError(f"{path}: not valid YAML ({first})", hint=HINT_MAPPING) from exc
    if not isinstance(doc, dict) or not doc:
        raise IngestError(
            f"{path}: expected a mapping like `item_id: PRODUCT_ID`, one line per column",
            hint=HINT_MAPPING,
        )
    columns: dict[str, str] = {}
    constants: dict[str, str] = {}
    for key, value in doc.items():
        if key not in known:
            raise IngestError(
                f"{path}: unknown column {key!r}; the source knows {', '.join(known)}",
                hint=HINT_MAPPING,
            )
        if isinstance(value, dict) and set(value) == {"value"} and value["value"] is not None:
            constants[key] = str(value["value"])
        elif isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            columns[key] = str(value)
        else:
            raise IngestError(
                f"{path}: {key}: expected an export column name or {{value: CONSTANT}}, "
                f"got {value!r}",
                hint=HINT_MAPPING,
            )
    sources = list(columns.values())
    twice = sorted({c for c in sources if sources.count(c) > 1})
    if twice:
        raise IngestError(
            f"{path}: column {twice[0]!r} is mapped more than once", hint=HINT_MAPPING
        )
    return ColumnMapping(path, columns, constants)


def find_mapping(landing: Path, known: tuple[str, ...], given: Path | None) -> ColumnMapping | None:
    """The mapping `given` on the command line, else `nightrec_columns.yml` beside the landing
    files (see `side_folders`), else none."""
    if given is not None:
        return load_mapping(given, known)
    for folder in side_folders(landing):
        if (folder / COLUMNS_FILE).is_file():
            return load_mapping(folder / COLUMNS_FILE, known)
    return None
