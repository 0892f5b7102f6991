"""Model registry under NIGHTREC_HOME/models: one folder per version, written atomically.

A version folder holds the model file and `meta.json` (parameters, training range, features,
validation metrics, feature importance, code version). `champion.json` names the champion
and keeps the history of promotions so a rollback is one step back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.errors import NightrecError

CHAMPION_FILE = "champion.json"
META_FILE = "meta.json"
MODEL_FILE = "model.txt"
# meta.json key of a model trained on the data of customers erased since (`nightrec forget`):
# the erasure requests that retired it. A retired model never serves again (the next run
# retrains), unless the same content is trained again from the erased store.
ERASED_KEY = "erased"


class RegistryError(NightrecError, RuntimeError):
    """The registry has no such model, or a model folder is damaged."""

    hint = "see `nightrec models list`"


@dataclass(frozen=True)
class ModelRecord:
    version: str
    path: Path
    meta: dict[str, Any]

    @property
    def as_of(self) -> dt.datetime:
        """Training saw only events before this moment. Models registered before the name was
        unified (2026-11) keep it under "cutoff"."""
        return dt.datetime.fromisoformat(self.meta.get("as_of") or self.meta["cutoff"])

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def retired(self) -> bool:
        """Trained on data of customers erased since: never served again."""
        return bool(self.meta.get(ERASED_KEY))


def code_version() -> str:
    """The git commit of the code that trained a model, when it runs from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def register(
    models_dir: Path,
    kind: str,
    model_text: str,
    meta: dict[str, Any],
    files: dict[str, bytes] | None = None,
) -> ModelRecord:
    """Store a trained model (its main text file plus any other `files`, e.g. network
    weights); the version is derived from its as-of and content, so registering the same
    model twice yields the same version and changes nothing."""
    models_dir.mkdir(parents=True, exist_ok=True)
    files = files or {}
    as_of = dt.datetime.fromisoformat(meta["as_of"])
    content = hashlib.sha256(model_text.encode())
    for name in sorted(files):
        content.update(name.encode() + files[name])
    digest = content.hexdigest()[:8]
    version = f"{kind}-{as_of:%Y%m%d}-{digest}"
    final = models_dir / version
    if final.exists():
        existing = load(models_dir, version)
        if existing.retired:  # trained again after the erasure, byte for byte: it is clean
            meta = {k: v for k, v in existing.meta.items() if k != ERASED_KEY}
            meta["erasure_cleared_at"] = dt.datetime.now().isoformat(timespec="seconds")
            _write_json_atomic(final / META_FILE, meta)
            return ModelRecord(version, final, meta)
        return existing
    staging = models_dir / f".{version}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    (staging / MODEL_FILE).write_text(model_text)
    for name, payload in files.items():
        (staging / name).write_bytes(payload)
    full_meta = {**meta, "version": version, "kind": kind, "code_version": code_version()}
    full_meta["registered_at"] = dt.datetime.now().isoformat(timespec="seconds")
    (staging / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=True, default=str))
    os.replace(staging, final)
    return ModelRecord(version, final, full_meta)


def load(models_dir: Path, version: str) -> ModelRecord:
    path = models_dir / version
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(
            f"model {version} in {models_dir} is missing or damaged: {exc}"
        ) from exc
    return ModelRecord(version, path, meta)


def list_models(models_dir: Path) -> list[ModelRecord]:
    """Every registered model, oldest as_of first."""
    if not models_dir.is_dir():
        return []
    records = [
        load(models_dir, p.name)
        for p in sorted(models_dir.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file()
    ]
    return sorted(records, key=lambda r: (r.as_of, r.version))


def champion_state(models_dir: Path) -> dict[str, Any]:
    path = models_dir / CHAMPION_FILE
    if not path.is_file():
        return {"champion": None, "history": []}
    return json.loads(path.read_text())


def champion(models_dir: Path) -> ModelRecord | None:
    version = champion_state(models_dir)["champion"]
    return load(models_dir, version) if version else None


def promote(models_dir: Path, version: str) -> ModelRecord:
    """Make `version` the champion, remembering the previous one for rollback."""
    record = load(models_dir, version)
    if record.retired:
        raise RegistryError(
            f"model {version} was trained on data of customers erased since; it cannot serve "
            "(the next run retrains)"
        )
    state = champion_state(models_dir)
    if state["champion"] != version:
        history = [*state["history"], state["champion"]] if state["champion"] else state["history"]
        _write_json_atomic(models_dir / CHAMPION_FILE, {"champion": version, "history": history})
    return record


def rollback(models_dir: Path) -> ModelRecord:
    """Restore the champion before the current one."""
    state = champion_state(models_dir)
    if not state["history"]:
        raise RegistryError("no earlier champion to roll back to")
    previous = state["history"][-1]
    _write_json_atomic(
        models_dir / CHAMPION_FILE, {"champion": previous, "history": state["history"][:-1]}
    )
    return load(models_dir, previous)


def newest_before(models_dir: Path, as_of: dt.datetime) -> ModelRecord | None:
    """The newest registered model (promoted or not) trained only on data before `as_of`."""
    eligible = [r for r in list_models(models_dir) if r.as_of <= as_of and not r.retired]
    return eligible[-1] if eligible else None


def serving_model(models_dir: Path, as_of: dt.datetime) -> ModelRecord | None:
    """The model a run with this as_of publishes with: the champion, or for a backfill of a
    day before the champion's as_of, the newest earlier champion that never saw its future."""
    state = champion_state(models_dir)
    promoted = {*state["history"], *([state["champion"]] if state["champion"] else [])}
    eligible = [
        r
        for r in list_models(models_dir)
        if r.version in promoted and r.as_of <= as_of and not r.retired
    ]
    current = state["champion"]
    for record in eligible:
        if record.version == current:
            return record
    return eligible[-1] if eligible else None


def mark_erased(models_dir: Path, version: str, request_id: str, at: str) -> None:
    """Retire a model trained on data of customers now erased (see ERASED_KEY)."""
    record = load(models_dir, version)
    marks = [*record.meta.get(ERASED_KEY, []), {"request_id": request_id, "at": at}]
    _write_json_atomic(record.path / META_FILE, {**record.meta, ERASED_KEY: marks})


def retired_champion(models_dir: Path) -> str | None:
    """The champion's version when erasure retired it (the run retrains and says so)."""
    version = champion_state(models_dir)["champion"]
    if version is None:
        return None
    try:
        return version if load(models_dir, version).retired else None
    except RegistryError:
        return None
