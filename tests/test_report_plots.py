"""The evaluate report's plots and the figures behind them, on hand-made values."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.evaluate.backtest import Backtest
from tasks.evaluate.plots import DIFFERENCE_PNG, METRICS_PNG, SEGMENTS_PNG
from tasks.evaluate.report import write_report
from tasks.evaluate.segments import history_segments
from tasks.protocol.metrics import bootstrap_interval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
AS_OF = dt.datetime(2026, 3, 1)


def _metrics(scale: float) -> dict[str, float]:
    out: dict[str, float] = {"users": 3}
    for k in (10, 20):
        for i, name in enumerate(("ndcg", "recall", "map", "hitrate", "precision")):
            out[f"{name}@{k}"] = scale * (i + 1) / 10
        out |= {f"items_covered@{k}": 5, f"coverage@{k}": 0.5}
        out |= {f"novelty@{k}": 3.0, f"diversity@{k}": 0.7}
    return out


def _backtest(with_details: bool = True) -> Backtest:
    metrics = {"lightgbm": _metrics(0.5), "repurchase": _metrics(0.4)}
    intervals = {
        name: {key: [v - 0.01, v + 0.01] for key, v in m.items() if "@" in key}
        for name, m in metrics.items()
    }
    return Backtest(
        as_of=AS_OF,
        horizon_days=30,
        users=3,
        metrics=metrics,
        best_model="lightgbm",
        best_baseline="repurchase",
        ndcg_difference={"mean_diff": 0.05, "low": 0.01, "high": 0.09},
        model_meta={
            "train_windows": ["2026-01-01T00:00:00"],
            "validation_window": "2026-01-15T00:00:00",
            "best_iteration": 7,
            "train_rows": 10,
            "feature_importance": {"hist_score": 12.0},
        },
        intervals=intervals if with_details else {},
        ndcg_diffs=[0.1, 0.0, 0.05] if with_details else [],
        segments=[
            {"segment": "1 order", "users": 1, "lightgbm": 0.2, "repurchase": 0.1},
            {"segment": "10+", "users": 2, "lightgbm": 0.6, "repurchase": 0.55},
        ]
        if with_details
        else [],
    )


def test_report_writes_every_png_and_links_it(tmp_path: Path) -> None:
    report = write_report(_backtest(), tmp_path, "nightrec evaluate --as-of 2026-03-01")
    text = report.read_text()
    for name in (METRICS_PNG, DIFFERENCE_PNG, SEGMENTS_PNG):
        png = tmp_path / name
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000
        assert f"]({name})" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["metrics.json", "report.md", METRICS_PNG, DIFFERENCE_PNG, SEGMENTS_PNG]
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["intervals"]["lightgbm"]["ndcg@10"] == pytest.approx([0.04, 0.06])
    assert saved["ndcg@10_by_history"][1] == {
        "segment": "10+",
        "users": 2,
        "lightgbm": 0.6,
        "repurchase": 0.55,
    }


def test_report_without_per_user_details_has_only_the_metric_bars(tmp_path: Path) -> None:
    text = write_report(_backtest(with_details=False), tmp_path, "cmd").read_text()
    assert f"]({METRICS_PNG})" in text
    assert DIFFERENCE_PNG not in text and not (tmp_path / DIFFERENCE_PNG).exists()
    assert SEGMENTS_PNG not in text and not (tmp_path / SEGMENTS_PNG).exists()


def test_bootstrap_interval_of_a_mean() -> None:
    assert bootstrap_interval(np.full(50, 0.3), n_resamples=200) == pytest.approx((0.3, 0.3))
    low, high = bootstrap_interval(np.array([0.0] * 50 + [1.0] * 50), n_resamples=2000)
    # mean 0.5, standard error 0.05: the 95% interval is about 0.5 +- 0.098
    assert 0.38 < low < 0.43 and 0.57 < high < 0.62


def test_history_segments_count_distinct_orders_before_as_of() -> None:
    rows = [  # user, order, days before AS_OF (negative: after)
        ("a", "o1", 5),
        ("a", "o1", 5),
        ("b", "o2", 40),
        ("b", "o3", 20),
        ("b", "o4", -1),  # at/after as_of: ignored
        *((("c", f"c{i}", i + 1)) for i in range(12)),
    ]
    events = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": ["x"] * len(rows),
            "event_type": ["purchase"] * len(rows),
            "ts": [AS_OF - dt.timedelta(days=r[2]) for r in rows],
            "order_id": [r[1] for r in rows],
        }
    )
    seg = history_segments(events, pl.Series(["c", "a", "b", "d"]), AS_OF)
    assert seg.rows() == [
        ("a", 1, "1 order"),
        ("b", 2, "2-3"),
        ("c", 12, "10+"),
        ("d", 0, None),
    ]
