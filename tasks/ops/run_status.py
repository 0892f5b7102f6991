"""What a nightly run tells its readers beyond the rows: which model served, what degraded,
and the facts of its input. Assembled here so the flow only wires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from tasks.errors import DegradedRun
from tasks.features.snapshot import Snapshot
from tasks.rank.task import ModelChoice, ScoreOutcome


def degraded_reasons(choice: ModelChoice, scored: ScoreOutcome) -> list[str]:
    """Every way the run served something other than a model of its own, in order."""
    reasons = []
    if choice.problem and choice.version is not None:
        reasons.append(choice.problem)  # the champion served, but tonight's retrain failed
    if scored.fallback:
        reasons.append(f"fallback: {scored.fallback}")
    return reasons


def run_fields(
    snapshot: Snapshot,
    choice: ModelChoice,
    scored: ScoreOutcome,
    ingested: list[dict[str, Any]],
    report: Path,
    notes: list[str],
    privacy: dict[str, Any] | None = None,
    health: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest fields a run adds to the writer's counts and checksums; `privacy` says
    the id mode and what retention dropped (never a key); `health` is the run's health
    summary (tasks/monitor), None when the monitor is off."""
    degraded = degraded_reasons(choice, scored)
    return {
        "status": "degraded" if degraded else "ok",
        "degraded": degraded,
        "notes": [*notes, *choice.notes, *scored.notes],
        "as_of": snapshot.as_of.isoformat(),
        "input_events": snapshot.n_events,
        "input_watermark": snapshot.watermark.isoformat() if snapshot.watermark else None,
        "retrained": choice.retrained,
        "model_choice": choice.reason,
        "model_kind": scored.model_kind,
        # How the kind was chosen (each kind's validation NDCG, the winner, why, the network
        # trained, skipped over its time budget, or failed): tonight's retrain's, else the
        # serving model's; null when no model was trained.
        "kind_selection": choice.selection,
        "model_fallback": scored.fallback,
        "shards": scored.shards,
        "validation_report": str(report),
        "ingested": ingested,
        **({"privacy": privacy} if privacy is not None else {}),
        "health": health,
    }


def enforce_status(manifest: dict[str, Any], allow_degraded: bool) -> None:
    """A degraded run is published (the lists are valid) but never reads as a success unless
    the settings allow it: the flow run fails and the CLI exits 3."""
    if manifest["degraded"] and not allow_degraded:
        raise DegradedRun(
            f"{manifest['run_date']} published degraded: {'; '.join(manifest['degraded'])}",
            manifest,
        )


enforce_status_task = task(name="enforce-status")(enforce_status)
