"""The run report of a nightly run: a Markdown file under `reports/nightly/` and two Prefect
artifacts (a table of row counts and metrics, and a link to the file) that the UI shows on the
flow run's Artifacts tab."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from tasks.rank import registry
from tasks.settings import Settings

METRIC_NAMES = ("ndcg", "recall", "map", "hitrate", "precision")


def _meta_of(models_dir: Path, model_version: str) -> dict[str, Any]:
    """The serving model's meta; empty for the baseline (no registry entry)."""
    try:
        return registry.load(models_dir, model_version).meta
    except registry.RegistryError:
        return {}


def kind_lines(selection: dict[str, Any] | None, retrained: bool) -> list[str]:
    """How the model's kind was chosen: each kind's validation NDCG, the winner and why, and
    what became of the network (trained, skipped over its time budget, failed)."""
    if not selection:
        return []
    when = "tonight's retrain" if retrained else "chosen when the serving model was trained"
    lines = [
        f"## Model kind: {selection['winner']} ({selection['mode']}; {when})",
        "",
        f"{selection['why']}.",
        "",
    ]
    if network := selection.get("network"):
        lines += [f"{network['why']}.", ""]
    ndcg = selection.get("validation_ndcg") or {}
    if len(ndcg) > 1:
        window = (selection.get("validation_window") or "")[:10]
        lines += [
            f"| kind | validation NDCG (window {window}) |",
            "| --- | --- |",
            *(f"| {kind} | {value:.4f} |" for kind, value in ndcg.items()),
            "",
        ]
    return lines


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


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def health_lines(health: dict[str, Any] | None, trends_png: str | None = None) -> list[str]:
    """The run's health: warnings first, then every check, then the trend plots."""
    if not health:
        return ["## Health: not measured (monitor.enabled is off)", ""]
    lines = [f"## Health: {health['status'].upper()}", ""]
    if health["warnings"]:
        lines += ["Warnings (published):", "", *(f"- {w}" for w in health["warnings"]), ""]
    lines += [
        "| check | status | measure | warn | fail | detail |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, check in health["checks"].items():
        lines.append(
            f"| {name} | {check['status']} | {_fmt(check['measure'])} | {_fmt(check['warn'])} "
            f"| {_fmt(check['fail'])} | {check['detail']} |"
        )
    lines += ["", f"Checks took {health['seconds']:.2f} s.", ""]
    if trends_png:
        lines += [f"![health over the last runs]({trends_png})", ""]
    return lines


def render_run_report(
    manifest: dict[str, Any],
    validation: dict[str, Any] | None,
    trends_png: str | None = None,
    selection: dict[str, Any] | None = None,
) -> str:
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
        *kind_lines(manifest.get("kind_selection") or selection, bool(manifest.get("retrained"))),
        *health_lines(manifest.get("health"), trends_png),
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


def _trends(
    manifest: dict[str, Any], folder: Path, settings: Settings | None
) -> tuple[Path, list[dict[str, Any]]] | None:
    """The last runs' health as a PNG beside the report, and as table rows."""
    if settings is None or not manifest.get("health"):
        return None
    from tasks.monitor.plots import plot_trends
    from tasks.monitor.trends import last_runs, trend_rows

    run_date = dt.date.fromisoformat(manifest["run_date"])
    history = last_runs(settings.db_path, run_date, settings.monitor.trend_runs)
    png = folder / f"trends-run_date={run_date}.png"
    title = f"Run health, {history.get_column('run_date').n_unique()} runs up to {run_date}"
    return plot_trends(history, png, title), trend_rows(history)


def report_run(
    manifest: dict[str, Any],
    reports_dir: Path,
    models_dir: Path,
    settings: Settings | None = None,
) -> Path:
    """Write the report (with the trend plots of the last runs' health when `settings` say
    where the store is) and attach it to the current Prefect flow run as artifacts."""
    path = reports_dir / "nightly" / f"run_date={manifest['run_date']}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    trends = _trends(manifest, path.parent, settings)
    meta = _meta_of(models_dir, manifest["model_version"])
    markdown = render_run_report(
        manifest,
        meta.get("validation"),
        trends[0].name if trends else None,
        meta.get("kind_selection"),
    )
    path.write_text(markdown)
    artifact = markdown
    if trends:  # the UI shows the plot inline; the file's relative link means nothing there
        from tasks.monitor.plots import data_uri

        artifact = markdown.replace(f"]({trends[0].name})", f"]({data_uri(trends[0])})")
        create_table_artifact(
            table=trends[1],
            key="nightly-health-trend",
            description=f"Run health of the last runs up to {manifest['run_date']}",
        )
    create_markdown_artifact(
        markdown=artifact,
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
