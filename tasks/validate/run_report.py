"""Validation results of one run, kept as JSON beside the run and linked from its manifest.

`validation/run_date=D/<run_id>.json` holds one entry per checked boundary (features, top-K),
each with every rule's outcome. A failed boundary raises ContractViolation naming the file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from tasks.errors import NightrecError
from tasks.validate.contracts import SuiteReport


class ContractViolation(NightrecError, RuntimeError):
    """Output of a stage broke its contract; the run stops before publishing."""

    hint = "read the validation report named above; yesterday's output is intact"


def report_path(validation_dir: Path, run_date: dt.date, run_id: str) -> Path:
    return validation_dir / f"run_date={run_date.isoformat()}" / f"{run_id}.json"


def read_report(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"stages": {}}


def record(path: Path, stage: str, reports: list[SuiteReport]) -> dict[str, Any]:
    """Add (or replace) `stage` in the run's report; written atomically (temp + rename)."""
    doc = read_report(path)
    entry = {
        "success": all(r.success for r in reports),
        "checked_at": dt.datetime.now().isoformat(timespec="seconds"),
        "suites": [r.as_dict() for r in reports],
    }
    doc["stages"][stage] = entry
    doc["success"] = all(s["success"] for s in doc["stages"].values())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)
    return entry


def enforce(path: Path, stage: str, reports: list[SuiteReport]) -> None:
    """Record the stage; raise ContractViolation (one line, naming the rules) when it failed."""
    entry = record(path, stage, reports)
    if entry["success"]:
        return
    failed = [f"{report.suite}:{rule}" for report in reports for rule in report.failed]
    raise ContractViolation(
        f"{stage} broke its contract ({'; '.join(failed)}); nothing published, "
        f"the previous output stays. Details: {path}"
    )
