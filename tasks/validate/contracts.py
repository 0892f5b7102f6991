"""Load a contract from `data_contracts/`, compile it into a Great Expectations suite, and
turn a failed validation into per-row quarantine reasons.

Great Expectations validates pandas frames only (DESIGN.md), and its import takes seconds, so
it is imported lazily and one ephemeral context serves the whole process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import yaml

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "data_contracts"
ROW_INDEX = "_row"


class ContractError(ValueError):
    """A contract file is malformed."""


@dataclass(frozen=True)
class Contract:
    table: str
    version: int
    columns: dict[str, dict[str, Any]]
    expectations: list[dict[str, dict[str, Any]]]

    @property
    def required_columns(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.get("required", False)]


@cache
def load_contract(table: str) -> Contract:
    """The contract of `table`, read from `data_contracts/<table>.yml`."""
    path = CONTRACTS_DIR / f"{table}.yml"
    if not path.is_file():
        raise ContractError(f"no contract for table {table!r} at {path}")
    doc = yaml.safe_load(path.read_text())
    try:
        return Contract(
            table=doc["table"],
            version=int(doc["version"]),
            columns=dict(doc["columns"]),
            expectations=list(doc.get("expectations", [])),
        )
    except (KeyError, TypeError) as exc:
        raise ContractError(f"contract {path} is malformed: {exc}") from exc


def _expectation_class(snake_name: str) -> type:
    import great_expectations as gx

    class_name = "".join(part.capitalize() for part in snake_name.split("_"))
    try:
        return getattr(gx.expectations, class_name)
    except AttributeError as exc:
        raise ContractError(f"unknown expectation {snake_name!r}") from exc


@cache
def _validator(table: str) -> tuple[Any, Any]:
    """(batch definition, suite) for `table`, built once per process."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    contract = load_contract(table)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas(f"{table}_frames")
        .add_dataframe_asset(table)
        .add_batch_definition_whole_dataframe(f"{table}_batch")
    )
    suite = gx.ExpectationSuite(name=f"{table}_v{contract.version}")
    for entry in contract.expectations:
        ((name, kwargs),) = entry.items()
        suite.add_expectation(_expectation_class(name)(**kwargs))
    return batch_definition, suite


def _reason(config: Any) -> str:
    kwargs = config.kwargs
    return f"contract:{config.type}:{kwargs.get('column', '*')}"


@dataclass(frozen=True)
class ValidationOutcome:
    """Rows that broke the contract (first failed expectation per row) and the suite summary."""

    bad_rows: pl.DataFrame  # columns: _row, reason
    evaluated: int
    failed_expectations: list[str]


def validate_rows(
    table: str, frame: pl.DataFrame, parameters: dict[str, Any] | None = None
) -> ValidationOutcome:
    """Validate `frame` (which carries a `_row` column) against the contract of `table`."""
    contract = load_contract(table)
    empty = pl.DataFrame(schema={ROW_INDEX: pl.Int64, "reason": pl.Utf8})
    if frame.height == 0:
        return ValidationOutcome(empty, len(contract.expectations), [])
    batch_definition, suite = _validator(table)
    pdf = frame.select([*contract.columns.keys(), ROW_INDEX]).to_pandas()
    pdf.index = pdf[ROW_INDEX].to_numpy()
    result = batch_definition.get_batch(batch_parameters={"dataframe": pdf}).validate(
        suite, result_format="COMPLETE", expectation_parameters=parameters or {}
    )
    rows: list[int] = []
    reasons: list[str] = []
    failed: list[str] = []
    for res in result.results:
        if res.success:
            continue
        reason = _reason(res.expectation_config)
        failed.append(reason)
        unexpected = res.result.get("unexpected_index_list") or []
        rows.extend(int(i) for i in unexpected)
        reasons.extend([reason] * len(unexpected))
    bad = pl.DataFrame({ROW_INDEX: rows, "reason": reasons}, schema=empty.schema)
    bad = bad.unique(subset=ROW_INDEX, keep="first", maintain_order=True)
    return ValidationOutcome(bad, len(result.results), failed)
