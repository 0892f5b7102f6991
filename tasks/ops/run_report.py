"""The run report of a nightly run: a Markdown file under `reports/nightly/` and two Prefect
artifacts (a table of row counts and metrics, and a link to the file) that the UI shows on the
flow run's Artifacts tab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from tasks.rank import registry

METRIC_NAMES = ("ndcg", "recall", "map", "hitrate", "precision")


def _validation_of(models_dir: Path, model_version: str) -> dict[str, Any] | None:
    """The serving model's validation metrics beside the baselines, when it is a model."""
    try:
        return registry.load(models_dir, model_version).meta.get("validation")
    except registry.RegistryError:
        return None  # the baseline has no registry entry


def _status_lines(manifest: dict[str, Any]) -> list[str]:
    """A degraded run says so first: what was served instead of the model, and why."""
    lines = []
    if manifest.get("degraded"):
        lines += ["## DEGRADED: not the model's lists for everyone", ""]
        lines += [f"- {reason}" for reason in manifest["degraded"]]
        lines.append("")
    privacy = manifest.get("privacy") or {}
    if privacy.get("ids") == "pseudonymized":
        lines += ["Customer ids are pseudonyms (HMAC-SHA256 with the shop's key).", ""]
    if retention := privacy.get("retention"):
        lines += [
            f"Retention {retention['retention_days']} days: dropped "
            f"{retention['events_dropped']:,} event(s) before {retention['events_before']} and "
            f"{retention['quarantined_dropped']:,} quarantined row(s).",
            "",
        ]
    if manifest.get("notes"):
        lines += ["Notes:", "", *(f"- {note}" for note in manifest["notes"]), ""]
    return lines


def _reason_lines(manifest: dict[str, Any]) -> list[str]:
    """The mix of reasons (tasks/explain) with each one's share of the rows."""
    reasons = manifest.get("rows_by_reason")
    if not reasons:
        return []
    total = sum(reasons.values()) or 1
    ordered = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    return [
        "",
        "| reason | rows | share |",
        "| --- | --- | --- |",
        *(f"| {name} | {rows:,} | {rows / total:.1%} |" for name, rows in ordered),
    ]


def render_run_report(manifest: dict[str, Any], validation: dict[str, Any] | None) -> str:
    """Markdown: what was published (rows, users, items, by source) and the model's metrics."""
    lines = [
        f"# nightrec nightly run {manifest['run_date']}",
        "",
        "| run date | rows | users | items | K | model | retrained | input events |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {manifest['run_date']} | {manifest['rows']:,} | {manifest['users']:,} "
        f"| {manifest['items']:,} | {manifest['k']} | {manifest['model_version']} "
        f"| {manifest.get('retrained', False)} | {manifest.get('input_events', 0):,} |",
        "",
        f"Model choice: {manifest.get('model_choice', '')}.",
        "",
        *_status_lines(manifest),
        "| source | rows |",
        "| --- | --- |",
        *(f"| {name} | {rows:,} |" for name, rows in manifest["rows_by_source"].items()),
        *_reason_lines(manifest),
    ]
    if validation:
        k = validation["k"]
        lines += [
            "",
            f"## Validation of {manifest['model_version']}: as-of {validation['as_of'][:10]}, "
            f"H = {validation['horizon_days']} days, {validation['users']:,} users",
            "",
            "| method | " + " | ".join(f"{n}@{k}" for n in METRIC_NAMES) + " |",
            "| --- |" + " --- |" * len(METRIC_NAMES),
        ]
        for method, metrics in validation["metrics"].items():
            values = " | ".join(f"{metrics[f'{n}@{k}']:.4f}" for n in METRIC_NAMES)
            lines.append(f"| {method} | {values} |")
    return "\n".join(lines) + "\n"


def report_run(manifest: dict[str, Any], reports_dir: Path, models_dir: Path) -> Path:
    """Write the report and attach it to the current Prefect flow run as artifacts."""
    markdown = render_run_report(manifest, _validation_of(models_dir, manifest["model_version"]))
    path = reports_dir / "nightly" / f"run_date={manifest['run_date']}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    create_markdown_artifact(
        markdown=markdown,
        key="nightly-run-report",
        description=f"Row counts and metrics of the run for {manifest['run_date']}",
    )
    create_link_artifact(
        link=path.resolve().as_uri(),
        link_text=f"run report {manifest['run_date']}",
        key="nightly-run-report-file",
        description="The run report on the nightrec host",
    )
    return path


report_task = task(name="report")(report_run)
