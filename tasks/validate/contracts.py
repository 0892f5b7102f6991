"""Load a contract from `data_contracts/`, compile it into Great Expectations suites, and
turn a failed validation into per-row quarantine reasons or a per-run report.

A contract has row expectations on the table itself and, optionally, `aggregates`: named
frames derived from the table (e.g. one row per customer of the top-K) that carry the
multi-row rules GE has no expectation for. The caller computes an aggregate frame (Polars);
its expectations are compiled into a suite of their own, named `<table>.<aggregate>`.

Great Expectations validates pandas frames only (DESIGN.md), and its import takes seconds, so
it is imported lazily and one ephemeral context serves the whole process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from tasks.errors import NightrecError

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "data_contracts"
ROW_INDEX = "_row"
POSITION = "nightrec_position"  # an expectation's place in its contract, kept in GE's meta


class ContractError(NightrecError, ValueError):
    """A contract file is malformed."""

    hint = "fix the contract under data_contracts/"


@dataclass(frozen=True)
class Aggregate:
    """A frame derived from the table, with expectations of its own."""

    columns: dict[str, dict[str, Any]]
    expectations: list[dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Contract:
    table: str
    version: int
    columns: dict[str, dict[str, Any]]
    expectations: list[dict[str, dict[str, Any]]]
    aggregates: dict[str, Aggregate] = field(default_factory=dict)

    @property
    def required_columns(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.get("required", False)]

    def part(self, aggregate: str | None) -> tuple[dict[str, dict[str, Any]], list[dict]]:
        """(columns, expectations) of the table (None) or of one of its aggregates."""
        if aggregate is None:
            return self.columns, self.expectations
        try:
            spec = self.aggregates[aggregate]
        except KeyError:
            raise ContractError(f"contract {self.table!r} has no aggregate {aggregate!r}") from None
        return spec.columns, spec.expectations


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
            aggregates={
                name: Aggregate(
                    columns=dict(spec["columns"]), expectations=list(spec["expectations"])
                )
                for name, spec in (doc.get("aggregates") or {}).items()
            },
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ContractError(f"contract {path} is malformed: {exc}") from exc


def _expectation_class(snake_name: str) -> type:
    import great_expectations as gx

    class_name = "".join(part.capitalize() for part in snake_name.split("_"))
    try:
        return getattr(gx.expectations, class_name)
    except AttributeError as exc:
        raise ContractError(f"unknown expectation {snake_name!r}") from exc


@cache
def _context() -> Any:
    """One ephemeral GE context per process (creating one costs about a second)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _skip_batch_fingerprint()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _skip_batch_fingerprint() -> None:
    """Stop GE's pandas engine from hashing every frame it is given.

    Below `HASH_THRESHOLD` bytes the engine fingerprints each batch with
    `pandas.util.hash_pandas_object` over every cell, twice per validation (the batch is
    fetched again by the validator). Nothing here reads the fingerprint (a batch marker), and
    hashing was two thirds of a contract check: 0.9 of 1.4 s for 830k feature rows
    (benchmarks/contract_check.py). Setting the threshold to 0 is the engine's own switch for
    frames too large to hash; `tests/test_contracts.py` checks that it still takes effect."""
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0


def suite_name(table: str, aggregate: str | None = None) -> str:
    return table if aggregate is None else f"{table}.{aggregate}"


@dataclass(frozen=True)
class _SuitePart:
    """Expectations that share columns, validated on a frame of those columns alone.

    GE's pandas engine copies the whole frame, minus the column's nulls, for every column
    expectation, so one suite over a wide frame costs expectations x width. Validating each
    group of related columns on its own narrow frame gives the same results for the column,
    column-pair and compound expectations the contracts use."""

    columns: tuple[str, ...]
    positions: tuple[int, ...]  # of its expectations in the contract's list
    batch_definition: Any
    suite: Any


def _expectation_columns(kwargs: dict[str, Any], all_columns: tuple[str, ...]) -> set[str]:
    named = [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")]
    columns = {c for c in named if c} | set(kwargs.get("column_list") or [])
    return columns or set(all_columns)  # a table-level rule sees every column


def _column_groups(
    expectations: list[dict[str, dict[str, Any]]], all_columns: tuple[str, ...]
) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """(columns, expectation positions) of each connected group: two expectations are in one
    group when they share a column. Columns keep the contract's order."""
    groups: list[tuple[set[str], list[int]]] = []
    for position, entry in enumerate(expectations):
        ((_, kwargs),) = entry.items()
        columns = _expectation_columns(kwargs, all_columns)
        joined = [g for g in groups if g[0] & columns]
        for group in joined:
            groups.remove(group)
            columns |= group[0]
        positions = sorted([position, *(p for g in joined for p in g[1])])
        groups.append((columns, positions))
    order = {c: i for i, c in enumerate(all_columns)}
    return sorted(
        (
            (tuple(sorted(cols, key=lambda c: order.get(c, len(order)))), tuple(positions))
            for cols, positions in groups
        ),
        key=lambda group: group[1][0],
    )


@cache
def _suite_parts(table: str, aggregate: str | None) -> tuple[_SuitePart, ...]:
    """The suites of `table` or one of its aggregates, one per column group, built once per
    process."""
    import great_expectations as gx

    contract = load_contract(table)
    columns, expectations = contract.part(aggregate)
    name = suite_name(table, aggregate)
    source = _context().data_sources.add_pandas(f"{name}_frames")
    parts = []
    for index, (group, positions) in enumerate(_column_groups(expectations, tuple(columns))):
        batch_definition = source.add_dataframe_asset(
            f"{name}.{index}"
        ).add_batch_definition_whole_dataframe(f"{name}.{index}_batch")
        suite = gx.ExpectationSuite(name=f"{name}_v{contract.version}.{index}")
        for position in positions:
            ((expectation, kwargs),) = expectations[position].items()
            # The position travels in meta: GE does not return results in the suite's order.
            meta = {POSITION: position}
            suite.add_expectation(_expectation_class(expectation)(**kwargs, meta=meta))
        parts.append(_SuitePart(group, positions, batch_definition, suite))
    return tuple(parts)


def _run_suite(part: _SuitePart, pdf: Any, result_format: str, parameters: dict) -> Any:
    """Validate one frame against one part, then drop what GE keeps of it.

    The datasource's one execution engine caches every batch (the frame itself) and every
    metric it computed, so a long stream of chunks would grow memory without bound."""
    try:
        return part.batch_definition.get_batch(batch_parameters={"dataframe": pdf}).validate(
            part.suite, result_format=result_format, expectation_parameters=parameters
        )
    finally:
        engine = part.batch_definition.data_asset.datasource.get_execution_engine()
        engine.batch_manager.reset_batch_cache()
        cache = getattr(engine, "_metric_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def _validate_parts(
    table: str,
    aggregate: str | None,
    frame: pl.DataFrame,
    result_format: str,
    parameters: dict,
    index: str | None = None,
) -> list[Any]:
    """Every expectation's GE result, in the contract's order. `index`: a column of `frame`
    that becomes the pandas index (so unexpected rows are reported by it)."""
    results: dict[int, Any] = {}
    for part in _suite_parts(table, aggregate):
        pdf = _to_pandas(frame.select([*part.columns, *([index] if index else [])]))
        if index:
            pdf.index = pdf.pop(index).to_numpy()
        outcome = _run_suite(part, pdf, result_format, parameters)
        results.update((r.expectation_config.meta[POSITION], r) for r in outcome.results)
    return [results[position] for position in sorted(results)]


def _to_pandas(frame: pl.DataFrame) -> Any:
    """The frame as pandas, every integer column widened to Int64.

    GE's range check is vectorised only for int64 and float64 columns; any other integer
    width (UInt32 counts, Int32 views) runs a Python function per value, which was most of a
    830k-row feature check (benchmarks/contract_check.py). Widening changes no value."""
    integers = [name for name, dtype in frame.schema.items() if dtype.is_integer()]
    return frame.with_columns(pl.col(integers).cast(pl.Int64)).to_pandas()


def _reason(config: Any) -> str:
    kwargs = config.kwargs
    column = kwargs.get("column") or "+".join(
        str(kwargs[c]) for c in ("column_A", "column_B") if c in kwargs
    )
    return f"contract:{config.type}:{column or '*'}"


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
    results = _validate_parts(table, None, frame, "COMPLETE", parameters or {}, ROW_INDEX)
    rows: list[int] = []
    reasons: list[str] = []
    failed: list[str] = []
    for res in results:
        if res.success:
            continue
        reason = _reason(res.expectation_config)
        failed.append(reason)
        unexpected = res.result.get("unexpected_index_list") or []
        rows.extend(int(i) for i in unexpected)
        reasons.extend([reason] * len(unexpected))
    bad = pl.DataFrame({ROW_INDEX: rows, "reason": reasons}, schema=empty.schema)
    bad = bad.unique(subset=ROW_INDEX, keep="first", maintain_order=True)
    return ValidationOutcome(bad, len(results), failed)


@dataclass(frozen=True)
class SuiteReport:
    """The outcome of one suite on one frame, JSON-ready via `as_dict`."""

    suite: str
    version: int
    rows: int
    results: list[dict[str, Any]]  # per expectation: rule, success, unexpected count, sample

    @property
    def success(self) -> bool:
        return all(r["success"] for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r["rule"] for r in self.results if not r["success"]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "version": self.version,
            "rows": self.rows,
            "success": self.success,
            "results": self.results,
        }


def check_frame(
    table: str,
    frame: pl.DataFrame,
    parameters: dict[str, Any] | None = None,
    aggregate: str | None = None,
) -> SuiteReport:
    """Validate a whole frame (the table, or one of its aggregates) and summarise the result."""
    contract = load_contract(table)
    columns, _ = contract.part(aggregate)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ContractError(
            f"frame for {suite_name(table, aggregate)} lacks column(s) {', '.join(missing)}"
        )
    results = []
    for res in _validate_parts(table, aggregate, frame, "SUMMARY", parameters or {}):
        summary = res.result or {}
        results.append(
            {
                "rule": _reason(res.expectation_config),
                "success": bool(res.success),
                "unexpected_count": int(summary.get("unexpected_count") or 0),
                "unexpected_sample": [
                    str(v) for v in (summary.get("partial_unexpected_list") or [])[:5]
                ],
            }
        )
    return SuiteReport(suite_name(table, aggregate), contract.version, frame.height, results)
