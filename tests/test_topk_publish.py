"""Top-K selection with padding, and the atomic, idempotent publish."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from tasks.constants import MANIFEST_NAME, OUTPUT_COLUMNS
from tasks.publish.writer import is_complete, partition_dir, publish
from tasks.rank.topk import top_k


def test_top_k_ranks_by_score_and_pads_short_lists_with_popular_items() -> None:
    scored = pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "item_id": ["x", "y", "z", "y"],
            "score": [0.2, 0.9, 0.5, 3.0],
        }
    )
    users = pl.Series(["a", "b", "c"])
    recs = top_k(scored, users, pl.Series(["p1", "y", "p2", "p3"]), k=3)
    assert recs.rows() == [
        ("a", "y", 1, 0.9, "model"),
        ("a", "z", 2, 0.5, "model"),
        ("a", "x", 3, 0.2, "model"),
        ("b", "y", 1, 3.0, "model"),
        ("b", "p1", 2, 2.0, "popularity_fallback"),
        ("b", "p2", 3, 0.0, "popularity_fallback"),
        ("c", "p1", 1, -1.0, "popularity_fallback"),
        ("c", "y", 2, -2.0, "popularity_fallback"),
        ("c", "p2", 3, -3.0, "popularity_fallback"),
    ]


def _recs() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "item_id": ["x", "y", "y", "x"],
            "rank": [1, 2, 1, 2],
            "score": [2.0, 1.0, 5.0, 4.0],
            "source": ["model"] * 4,
            "reason": ["repurchase", "bought-together", "repurchase", "popular"],
            "reason_detail": ["bought twice", "with x", "bought once", "#1"],
            "reason_features": ["ui_orders:+0.500", None, "ui_orders:+0.200", None],
        }
    )


def test_publish_writes_partition_and_manifest(tmp_path: Path) -> None:
    day = dt.date(2026, 1, 5)
    manifest = publish(_recs(), tmp_path, day, "run-1", "m1", 2, {"as_of": "2026-01-06T00:00:00"})
    folder = partition_dir(tmp_path, day)
    written = pl.read_parquet(folder / "part-00000.parquet")
    assert written.columns == list(OUTPUT_COLUMNS)
    assert written.get_column("model_version").unique().to_list() == ["m1"]
    assert json.loads((folder / MANIFEST_NAME).read_text()) == manifest
    assert (manifest["rows"], manifest["users"], manifest["k"]) == (4, 2, 2)
    assert manifest["rows_by_source"] == {"model": 4}
    assert manifest["rows_by_reason"] == {"bought-together": 1, "popular": 1, "repurchase": 2}
    assert is_complete(tmp_path, day)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_date=2026-01-05"]


def test_republish_replaces_the_day_only_and_detects_tampering(tmp_path: Path) -> None:
    day, other = dt.date(2026, 1, 5), dt.date(2026, 1, 6)
    publish(_recs(), tmp_path, other, "run-0", "m0", 2, {})
    publish(_recs(), tmp_path, day, "run-1", "m1", 2, {})
    publish(_recs().head(2), tmp_path, day, "run-2", "m2", 2, {})
    assert pl.read_parquet(partition_dir(tmp_path, day) / "*.parquet").height == 2
    assert pl.read_parquet(partition_dir(tmp_path, other) / "*.parquet").height == 4
    (partition_dir(tmp_path, day) / "part-00000.parquet").write_bytes(b"half-written")
    assert not is_complete(tmp_path, day)
    assert is_complete(tmp_path, other)
    assert not is_complete(tmp_path, dt.date(2026, 1, 7))
