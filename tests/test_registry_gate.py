"""The model registry (versions, champion, rollback) and the promotion gate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tasks.rank import registry
from tasks.rank.gate import promotion_gate


def meta(as_of: str, model: float, repurchase: float, popularity: float = 0.1) -> dict:
    return {
        "as_of": as_of,
        "validation": {
            "k": 10,
            "metrics": {
                "lightgbm": {"ndcg@10": model},
                "repurchase": {"ndcg@10": repurchase},
                "popularity": {"ndcg@10": popularity},
            },
        },
    }


def test_gate_refuses_a_challenger_that_does_not_beat_the_best_baseline() -> None:
    decision = promotion_gate(meta("2026-01-08", 0.30, 0.32), None)
    assert not decision.promote
    assert "repurchase 0.3200" in decision.reason


def test_gate_refuses_a_worse_challenger_and_accepts_a_better_one() -> None:
    champion = meta("2026-01-01", 0.44, 0.40)  # lift 1.10
    worse = meta("2026-01-08", 0.42, 0.40)  # lift 1.05
    better = meta("2026-01-08", 0.36, 0.30)  # lift 1.20
    assert not promotion_gate(worse, champion, tolerance=0.02).promote
    assert promotion_gate(worse, champion, tolerance=0.06).promote
    assert promotion_gate(better, champion, tolerance=0.0).promote
    assert promotion_gate(meta("2026-01-08", 0.33, 0.30), None).promote


def test_register_is_idempotent_and_promote_rollback_walk_the_history(tmp_path: Path) -> None:
    first = registry.register(tmp_path, "lgbm", "model-a", meta("2026-01-01T00:00:00", 0.4, 0.3))
    again = registry.register(tmp_path, "lgbm", "model-a", meta("2026-01-01T00:00:00", 0.4, 0.3))
    second = registry.register(tmp_path, "lgbm", "model-b", meta("2026-01-08T00:00:00", 0.4, 0.3))
    assert first.version == again.version and first.version.startswith("lgbm-20260101-")
    assert [r.version for r in registry.list_models(tmp_path)] == [first.version, second.version]

    registry.promote(tmp_path, first.version)
    registry.promote(tmp_path, second.version)
    assert registry.champion(tmp_path).version == second.version
    assert registry.rollback(tmp_path).version == first.version
    assert registry.champion(tmp_path).version == first.version
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback(tmp_path)
    with pytest.raises(registry.RegistryError, match="missing or damaged"):
        registry.promote(tmp_path, "lgbm-nope")


def test_serving_model_never_uses_a_model_that_saw_the_future(tmp_path: Path) -> None:
    old = registry.register(tmp_path, "lgbm", "a", meta("2026-01-01T00:00:00", 0.4, 0.3))
    rejected = registry.register(tmp_path, "lgbm", "b", meta("2026-01-05T00:00:00", 0.2, 0.3))
    new = registry.register(tmp_path, "lgbm", "c", meta("2026-01-08T00:00:00", 0.4, 0.3))
    registry.promote(tmp_path, old.version)
    registry.promote(tmp_path, new.version)

    def serving(day: str) -> str | None:
        record = registry.serving_model(tmp_path, dt.datetime.fromisoformat(day))
        return record.version if record else None

    assert serving("2026-01-09") == new.version
    assert serving("2026-01-06") == old.version  # the unpromoted model is never served
    assert serving("2025-12-31") is None
    assert registry.newest_before(tmp_path, dt.datetime(2026, 1, 6)).version == rejected.version
