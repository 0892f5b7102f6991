"""Contracts of the feature table and the published top-K: each rule broken once."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tasks.validate.contracts import ContractError, check_frame, load_contract
from tasks.validate.features import validate_features
from tasks.validate.run_report import ContractViolation, enforce, read_report
from tasks.validate.topk import per_customer, validate_topk

K = 3
CATALOG = ["a", "b", "c", "d"]
USERS = ["u1", "u2"]


def good_recs() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": ["u1"] * 3 + ["u2"] * 3,
            "item_id": ["a", "b", "c", "d", "a", "b"],
            "rank": [1, 2, 3, 1, 2, 3],
            "score": [0.9, 0.5, 0.5, 2.0, 1.0, -1.0],
            "reason": [
                *("repurchase", "bought-together", "similar-item"),
                *("trending", "popular", "fallback"),
            ],
            "reason_detail": ["bought twice", "with b", "like a", "#1", "#2", "padding"],
        },
        schema_overrides={"rank": pl.Int32},
    )


def failed_rules(recs: pl.DataFrame, **kw) -> set[str]:
    args = {"k": K, "catalog_items": CATALOG, "known_users": USERS, **kw}
    reports = validate_topk(recs, **args)
    return {f"{r.suite}:{rule}" for r in reports for rule in r.failed}


def _set(recs: pl.DataFrame, row: int, column: str, value) -> pl.DataFrame:
    values = recs.get_column(column).to_list()
    values[row] = value
    return recs.with_columns(pl.Series(column, values, dtype=recs.schema[column]))


ROWS = "recommendations:contract:"
PER = "recommendations.per_customer:contract:"


def test_a_good_top_k_passes_every_rule() -> None:
    assert failed_rules(good_recs()) == set()
    # Ties in score are allowed; a catalog smaller than K asks for every item once.
    small = pl.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["a", "b", "b", "a"]},
    ).with_columns(
        pl.Series("rank", [1, 2, 1, 2], dtype=pl.Int32),
        pl.Series("score", [2.0, 1.0, 1.0, 1.0]),
        pl.lit("popular").alias("reason"),
        pl.lit("#1").alias("reason_detail"),
    )
    assert failed_rules(small, catalog_items=["a", "b"]) == set()
    # Forbidden items shrink what the catalog allows: {a, b, c} less c leaves two.
    assert failed_rules(small, catalog_items=["a", "b", "c"], forbidden_items=["c"]) == set()
    assert failed_rules(small, catalog_items=["a", "b", "c"]) == {
        f"{PER}expect_column_pair_values_to_be_equal:rows+expected_rows"
    }


def test_per_customer_aggregates_by_hand() -> None:
    recs = _set(_set(good_recs(), 1, "score", 1.5), 2, "rank", 2)
    frame = per_customer(recs, 3).sort("user_id")
    assert frame.rows(named=True)[0] == {
        "user_id": "u1",
        "rows": 3,
        "duplicate_items": 0,
        # ranks 1, 2, 2 sorted: the third row should be 3
        "rank_errors": 1,
        # in rank order (ties by item id): 0.9, 1.5, 0.5 -> one increase
        "score_increases": 1,
        "expected_rows": 3,
    }


@pytest.mark.parametrize(
    ("name", "mutate", "kwargs", "expected"),
    [
        (
            "more than K rows",
            lambda r: pl.concat(
                [
                    r,
                    pl.DataFrame(
                        {
                            "user_id": ["u1"],
                            "item_id": ["d"],
                            "rank": [4],
                            "score": [0.1],
                            "reason": ["popular"],
                            "reason_detail": ["#4"],
                        }
                    ),
                ],
                how="vertical_relaxed",
            ),
            {},
            {
                f"{ROWS}expect_column_values_to_be_between:rank",
                f"{PER}expect_column_values_to_be_between:rows",
                f"{PER}expect_column_pair_values_to_be_equal:rows+expected_rows",
            },
        ),
        (
            "fewer than K although the catalog allows K",
            lambda r: r.filter(~((pl.col("user_id") == "u1") & (pl.col("rank") == 3))),
            {},
            {f"{PER}expect_column_pair_values_to_be_equal:rows+expected_rows"},
        ),
        (
            "duplicate item for a customer",
            lambda r: _set(r, 1, "item_id", "a"),
            {},
            {f"{PER}expect_column_values_to_be_between:duplicate_items"},
        ),
        (
            "ranks not 1..K",
            lambda r: _set(r, 1, "rank", 1),
            {},
            {f"{PER}expect_column_values_to_be_between:rank_errors"},
        ),
        (
            "score increases with rank",
            lambda r: _set(r, 2, "score", 0.7),
            {},
            {f"{PER}expect_column_values_to_be_between:score_increases"},
        ),
        (
            "item not in the catalog",
            lambda r: _set(r, 0, "item_id", "zz"),
            {},
            {f"{ROWS}expect_column_pair_values_to_be_equal:item_id+catalog_item_id"},
        ),
        (
            "unknown customer",
            lambda r: pl.concat(
                [r, r.filter(pl.col("user_id") == "u2").with_columns(pl.lit("u9").alias("user_id"))]
            ),
            {},
            {f"{ROWS}expect_column_pair_values_to_be_equal:user_id+known_user_id"},
        ),
        (
            "a known customer without a list",
            lambda r: r.filter(pl.col("user_id") != "u2"),
            {},
            {
                f"{PER}expect_column_values_to_be_between:rows",
                f"{PER}expect_column_pair_values_to_be_equal:rows+expected_rows",
            },
        ),
        (
            "nothing published at all",
            lambda r: r.head(0),
            {},
            {
                f"{PER}expect_column_values_to_be_between:rows",
                f"{PER}expect_column_pair_values_to_be_equal:rows+expected_rows",
            },
        ),
        (
            "forbidden item",
            lambda r: r,
            {"forbidden_items": ["c"]},
            {f"{ROWS}expect_column_values_to_not_be_in_set:item_id"},
        ),
        (
            "missing score",
            lambda r: _set(r, 5, "score", None),
            {},
            {f"{ROWS}expect_column_values_to_not_be_null:score"},
        ),
        (
            "a row without a reason",
            lambda r: _set(r, 4, "reason", None),
            {},
            {f"{ROWS}expect_column_values_to_not_be_null:reason"},
        ),
        (
            "a reason outside the known codes",
            lambda r: _set(r, 0, "reason", "because"),
            {},
            {f"{ROWS}expect_column_values_to_be_in_set:reason"},
        ),
        (
            "a reason without its detail",
            lambda r: _set(r, 3, "reason_detail", None),
            {},
            {f"{ROWS}expect_column_values_to_not_be_null:reason_detail"},
        ),
    ],
)
def test_each_top_k_rule_broken_once_fails_exactly_that_rule(
    name: str, mutate, kwargs: dict, expected: set[str]
) -> None:
    assert failed_rules(mutate(good_recs()), **kwargs) == expected, name


def good_features() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["a", "b", "a"],
            "ui_orders": [2, 0, 1],
            "ui_days_since_last": [3.0, None, 0.5],
            "ui_order_share": [1.0, 0.0, 0.5],
            "ui_in_last_order": [1, 0, 0],
            "u_days_since_last": [3.0, 3.0, 0.5],
            "u_days_since_event": [1.0, 1.0, 0.1],
            "uc_share": [0.5, 0.5, 1.0],
            "i_repeat_rate": [0.2, 0.0, 0.2],
            "i_buyers_7d": [1, 0, 1],
            "i_buyers_30d": [4, 0, 4],
            "i_days_since_last_sale": [0.5, 9.0, 0.5],
            "ui_median_gap": [10.0, None, None],
            "ui_cycle_ratio": [0.3, None, None],
            "i_repurchase_gap": [12.0, None, 12.0],
            "ui_due_vs_item": [0.25, None, 0.04],
            "u_items": [5, 5, 1],
            "u_items_90d": [2, 2, 1],
            "u_trend": [1.4, 1.4, 2.5],
            "i_buyers_90d": [9, 0, 9],
            "i_trend_90d": [1.3, 1.0, 1.3],
            "i_recent_share": [0.5, 0.0, 0.5],
            "ui_category_share": [0.8, 0.0, 1.0],
            "ui_views": [3, 0, 0],
            "ui_carts": [1, 0, 0],
            "ui_views_30d": [2, None, 0],
            "extra_feature": [1, 2, 3],  # columns the contract does not name are not checked
        }
    )


@pytest.mark.parametrize(
    ("column", "row", "value", "rule"),
    [
        ("ui_days_since_last", 0, -1.0, "expect_column_values_to_be_between:ui_days_since_last"),
        ("item_id", 1, "a", "expect_compound_columns_to_be_unique:*"),
        ("uc_share", 2, 1.5, "expect_column_values_to_be_between:uc_share"),
        (
            "i_buyers_7d",
            0,
            5,
            "expect_column_pair_values_a_to_be_greater_than_b:i_buyers_30d+i_buyers_7d",
        ),
        ("ui_in_last_order", 1, 2, "expect_column_values_to_be_in_set:ui_in_last_order"),
        # version 2: the repurchase cycle, trends, shares and views/carts
        ("ui_cycle_ratio", 0, -0.5, "expect_column_values_to_be_between:ui_cycle_ratio"),
        ("ui_median_gap", 0, -1.0, "expect_column_values_to_be_between:ui_median_gap"),
        ("i_repurchase_gap", 2, -3.0, "expect_column_values_to_be_between:i_repurchase_gap"),
        ("ui_due_vs_item", 2, -0.1, "expect_column_values_to_be_between:ui_due_vs_item"),
        (
            "u_items_90d",
            2,
            2,
            "expect_column_pair_values_a_to_be_greater_than_b:u_items+u_items_90d",
        ),
        ("u_trend", 0, 3.5, "expect_column_values_to_be_between:u_trend"),
        ("i_trend_90d", 1, -1.0, "expect_column_values_to_be_between:i_trend_90d"),
        (
            "i_buyers_90d",
            0,
            3,
            "expect_column_pair_values_a_to_be_greater_than_b:i_buyers_90d+i_buyers_30d",
        ),
        ("i_recent_share", 0, 1.5, "expect_column_values_to_be_between:i_recent_share"),
        ("ui_category_share", 1, None, "expect_column_values_to_not_be_null:ui_category_share"),
        ("ui_category_share", 0, 1.2, "expect_column_values_to_be_between:ui_category_share"),
        ("ui_carts", 0, -1, "expect_column_values_to_be_between:ui_carts"),
        (
            "ui_views_30d",
            0,
            4,
            "expect_column_pair_values_a_to_be_greater_than_b:ui_views+ui_views_30d",
        ),
    ],
)
def test_features_contract_catches_look_ahead_and_bad_values(
    column: str, row: int, value, rule: str
) -> None:
    assert validate_features(good_features()).success
    report = validate_features(_set(good_features(), row, column, value))
    assert report.failed == [f"contract:{rule}"]


def test_a_check_does_not_fingerprint_the_frame() -> None:
    """GE would hash every cell of each frame for a batch marker nobody reads (two thirds of a
    feature check's time); the context switches that off, and a check still catches a bad row."""
    from tasks.validate.contracts import _run_suite, _suite_parts

    part = _suite_parts("features", None)[0]
    pdf = good_features().select(part.columns).to_pandas()
    result = _run_suite(part, pdf, "SUMMARY", {})
    assert result.success
    assert "pandas_data_fingerprint" not in result.meta["batch_markers"]
    assert not validate_features(_set(good_features(), 1, "ui_orders", -1)).success


def test_suites_split_by_shared_columns_and_results_keep_the_contract_order() -> None:
    """Each group of expectations that share a column runs on a frame of its columns only;
    the report lists every rule once, in the contract's order."""
    from tasks.validate.contracts import _column_groups

    expectations = [
        {"a": {"column": "x"}},
        {"b": {"column_A": "y", "column_B": "z"}},
        {"c": {"column": "w"}},
        {"d": {"column_list": ["z", "x"]}},
        {"e": {}},
    ]
    assert _column_groups(expectations[:4], ("w", "x", "y", "z")) == [
        (("x", "y", "z"), (0, 1, 3)),
        (("w",), (2,)),
    ]
    assert _column_groups(expectations, ("w", "x", "y", "z")) == [
        (("w", "x", "y", "z"), (0, 1, 2, 3, 4))
    ]
    contract = load_contract("features")
    report = validate_features(good_features())
    assert [r["rule"] for r in report.results] == [
        "contract:{}:{}".format(
            name,
            kwargs.get("column")
            or "+".join(str(kwargs[c]) for c in ("column_A", "column_B") if c in kwargs)
            or "*",
        )
        for ((name, kwargs),) in (e.items() for e in contract.expectations)
    ]


def test_contract_errors_are_clear() -> None:
    with pytest.raises(ContractError, match="no aggregate 'nope'"):
        load_contract("recommendations").part("nope")
    with pytest.raises(ContractError, match="lacks column"):
        check_frame("recommendations", good_recs().drop("score"))


def test_run_report_keeps_every_stage_and_a_failure_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "validation" / "run_date=2026-01-01" / "run-1.json"
    enforce(path, "features", [validate_features(good_features())])
    bad = _set(good_recs(), 2, "score", 0.7)
    with pytest.raises(ContractViolation, match=r"top_k broke its contract .*score_increases"):
        enforce(path, "top_k", validate_topk(bad, K, CATALOG, USERS))
    doc = read_report(path)
    assert doc["success"] is False
    assert doc["stages"]["features"]["success"] is True
    suites = {s["suite"]: s for s in doc["stages"]["top_k"]["suites"]}
    failed = [r for r in suites["recommendations.per_customer"]["results"] if not r["success"]]
    assert [(r["rule"], r["unexpected_count"]) for r in failed] == [
        ("contract:expect_column_values_to_be_between:score_increases", 1)
    ]
    assert json.loads(path.read_text()) == doc


def test_check_topk_stops_a_bad_top_k_before_publishing(tmp_path: Path) -> None:
    import datetime as dt

    from tasks.features.snapshot import Snapshot
    from tasks.settings import load_settings
    from tasks.validate.task import check_topk

    events = pl.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["a", "b"],
            "event_type": ["purchase", "view"],
            "ts": [dt.datetime(2026, 1, 1, 10), dt.datetime(2026, 1, 2, 10)],
        }
    )
    catalog = pl.DataFrame({"item_id": CATALOG})
    events.write_parquet(tmp_path / "events.parquet")
    catalog.write_parquet(tmp_path / "catalog.parquet")
    snapshot = Snapshot(
        tmp_path / "events.parquet",
        tmp_path / "catalog.parquet",
        dt.datetime(2026, 1, 3),
        2,
        dt.datetime(2026, 1, 2, 10),
    )
    settings = load_settings(home=tmp_path, k=K)
    report = tmp_path / "validation" / "run.json"
    good_recs().write_parquet(tmp_path / "good.parquet")
    check_topk(settings, snapshot, tmp_path / "good.parquet", report)
    assert read_report(report)["stages"]["top_k"]["success"] is True

    settings = load_settings(home=tmp_path, k=K, safety={"forbidden_items": ["d"]})
    with pytest.raises(ContractViolation, match="expect_column_values_to_not_be_in_set:item_id"):
        check_topk(settings, snapshot, tmp_path / "good.parquet", report)
    assert read_report(report)["success"] is False
