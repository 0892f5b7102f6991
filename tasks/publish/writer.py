"""Write `recommendations/run_date=D/` atomically: stage beside it, then swap by rename.

Readers see the old partition or the new one, never a half-written one; a crash leaves at
most a `.staging-*` folder, which the next publish of that day removes, or (killed between the
two renames of the swap) the previous partition parked as `.old-*`, which `recover_partition`
puts back before the day is run again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task

from tasks.constants import (
    ITEM_ID,
    MANIFEST_NAME,
    MODEL_VERSION,
    OUTPUT_COLUMNS,
    RANK,
    REASON,
    REC_SOURCE,
    RUN_ID,
    USER_ID,
)
from tasks.progress import stage_task
from tasks.safety.faults import kill_if_armed

PART_NAME = "part-00000.parquet"


def partition_dir(root: Path, run_date: dt.date) -> Path:
    return root / f"run_date={run_date.isoformat()}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish(
    recs: pl.DataFrame,
    root: Path,
    run_date: dt.date,
    run_id: str,
    model_version: str,
    k: int,
    extra: dict[str, Any],
    fault: str | None = None,
) -> dict[str, Any]:
    """Write the partition for `run_date`, replacing an earlier one; returns the manifest."""
    out = (
        recs.with_columns(pl.lit(model_version).alias(MODEL_VERSION), pl.lit(run_id).alias(RUN_ID))
        .select(OUTPUT_COLUMNS)
        .sort(USER_ID, RANK)
    )
    final = partition_dir(root, run_date)
    root.mkdir(parents=True, exist_ok=True)
    recover_partition(root, run_date)
    for stale in root.glob(f".staging-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".staging-{final.name}-{run_id}"
    staging.mkdir()
    part = staging / PART_NAME
    out.write_parquet(part)
    source_counts = out.group_by(REC_SOURCE).len().sort(REC_SOURCE)
    reason_counts = out.group_by(REASON).len().sort(REASON)
    manifest = {
        "run_date": run_date.isoformat(),
        "run_id": run_id,
        "model_version": model_version,
        "k": k,
        "rows": out.height,
        "users": out.get_column(USER_ID).n_unique(),
        "items": out.get_column(ITEM_ID).n_unique(),
        "rows_by_source": dict(source_counts.iter_rows()),
        "rows_by_reason": dict(reason_counts.iter_rows()),
        "files": {PART_NAME: {"rows": out.height, "sha256": _sha256(part)}},
        "written_at": dt.datetime.now().isoformat(timespec="seconds"),
        **extra,
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, default=str))
    kill_if_armed(fault, "mid_publish")
    _swap_in(staging, final, fault)
    return manifest


def _old_dir(final: Path) -> Path:
    return final.with_name(f".old-{final.name}")


def _swap_in(staging: Path, final: Path, fault: str | None = None) -> None:
    """Move the staged folder into place; the previous partition is removed only after."""
    old = _old_dir(final)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    kill_if_armed(fault, "mid_swap")
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def recover_partition(root: Path, run_date: dt.date) -> str | None:
    """Undo a swap that died half-way: put the parked previous partition back if the new
    one never arrived, or drop it if it did. Returns what it did, None when nothing to do."""
    final = partition_dir(root, run_date)
    old = _old_dir(final)
    if not old.exists():
        return None
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        return f"removed leftover {old.name}"
    os.replace(old, final)
    return f"restored {final.name} from {old.name}"


def read_manifest(root: Path, run_date: dt.date) -> dict[str, Any] | None:
    path = partition_dir(root, run_date) / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(root: Path, run_date: dt.date) -> bool:
    """True when the partition has a manifest and every file matches its checksum."""
    manifest = read_manifest(root, run_date)
    if manifest is None:
        return False
    folder = partition_dir(root, run_date)
    return all(
        (folder / name).is_file() and _sha256(folder / name) == info["sha256"]
        for name, info in manifest["files"].items()
    )


def partition_dates(root: Path) -> list[dt.date]:
    """Run dates with a published partition under `root`, oldest first."""
    if not root.is_dir():
        return []
    return sorted(
        dt.date.fromisoformat(p.name.removeprefix("run_date="))
        for p in root.glob("run_date=*")
        if p.is_dir()
    )


def rewrite_partition(
    root: Path,
    run_date: dt.date,
    drop_users: list[str],
    note: dict[str, Any],
) -> dict[str, int]:
    """Remove `drop_users`' rows from every Parquet part of a published partition, staged and
    swapped in like a publish (readers see the old partition or the new one). The manifest's
    counts and checksums follow, and `note` is appended to its `erasures`. Returns the rows
    removed per user (empty, and nothing rewritten, when the partition held none of them)."""
    recover_partition(root, run_date)
    final = partition_dir(root, run_date)
    manifest = read_manifest(root, run_date)
    parts = sorted(final.glob("*.parquet"))
    if manifest is None or not parts:
        return {}
    drop = pl.Series(drop_users, dtype=pl.Utf8).implode()
    frames = {part.name: pl.read_parquet(part) for part in parts}
    removed: dict[str, int] = {}
    for frame in frames.values():
        hit = frame.filter(pl.col(USER_ID).is_in(drop)).group_by(USER_ID).len()
        for user, n in hit.iter_rows():
            removed[user] = removed.get(user, 0) + n
    if not removed:
        return {}
    staging = root / f".staging-{final.name}-erase-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    kept_parts = []
    files = dict(manifest.get("files", {}))
    for name, frame in frames.items():
        kept = frame.filter(~pl.col(USER_ID).is_in(drop))
        kept.write_parquet(staging / name)
        checksum = _sha256(staging / name)
        files[name] = {**files.get(name, {}), "rows": kept.height, "sha256": checksum}
        kept_parts.append(kept)
    for other in final.iterdir():  # anything else of the partition travels as it is
        if other.is_file() and other.suffix != ".parquet" and other.name != MANIFEST_NAME:
            shutil.copy2(other, staging / other.name)
    out = pl.concat(kept_parts) if kept_parts else pl.DataFrame()
    source_counts = out.group_by(REC_SOURCE).len().sort(REC_SOURCE)
    manifest.update(
        rows=out.height,
        users=out.get_column(USER_ID).n_unique(),
        items=out.get_column(ITEM_ID).n_unique(),
        rows_by_source=dict(source_counts.iter_rows()),
        files=files,
        erasures=[*manifest.get("erasures", []), {**note, "rows_removed": sum(removed.values())}],
    )
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, default=str))
    _swap_in(staging, final)
    return removed


def publish_from(
    recs_path: Path,
    root: Path,
    run_date: dt.date,
    run_id: str,
    model_version: str,
    k: int,
    extra: dict[str, Any],
    fault: str | None = None,
) -> dict[str, Any]:
    recs = pl.read_parquet(recs_path)
    return publish(recs, root, run_date, run_id, model_version, k, extra, fault)


publish_task = stage_task("publish", publish_from)
recover_task = task(name="recover-partition")(recover_partition)
