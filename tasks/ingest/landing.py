"""Landing files: finding them, naming their day, reading them as raw text columns."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import re
from pathlib import Path

import polars as pl

DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|csv\.gz|parquet|jsonl|jsonl\.gz)$")


class IngestError(ValueError):
    """A landing file cannot be ingested; the message names the file and the problem."""


def day_of(path: Path) -> dt.date:
    """The day a landing file holds, from its name `YYYY-MM-DD.<ext>`."""
    match = DAY_FILE.match(path.name)
    if not match:
        raise IngestError(f"{path}: name must be YYYY-MM-DD.csv|csv.gz|parquet|jsonl[.gz]")
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError as exc:
        raise IngestError(f"{path}: {match.group(1)} is not a calendar day") from exc


def find_day_files(
    landing: Path, start: dt.date | None = None, end: dt.date | None = None
) -> list[Path]:
    """Day files in `landing` or `landing/events`, sorted by day, within [start, end]."""
    if landing.is_file():
        return [landing]
    if not landing.is_dir():
        raise IngestError(f"{landing}: no such file or folder")
    folders = [landing, landing / "events"]
    files = [
        p
        for folder in folders
        if folder.is_dir()
        for p in folder.iterdir()
        if DAY_FILE.match(p.name)
    ]
    by_day: dict[dt.date, Path] = {}
    for path in sorted(files):
        day = day_of(path)
        if day in by_day:
            raise IngestError(
                f"{path}: day {day} also landed as {by_day[day]}; keep one file per day"
            )
        by_day[day] = path
    return [
        by_day[day]
        for day in sorted(by_day)
        if (start is None or day >= start) and (end is None or day <= end)
    ]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decoded_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IngestError(f"{path}: not a valid gzip file ({exc})") from exc
    if not raw.strip():
        raise IngestError(f"{path}: file is empty")
    return raw


def read_raw(path: Path) -> pl.DataFrame:
    """All columns of a landing file as text, so that parsing and its failures are ours."""
    name = path.name
    try:
        if name.endswith(".parquet"):
            frame = pl.read_parquet(path)
            if frame.width == 0:
                raise IngestError(f"{path}: file is empty")
            return frame.select(pl.all().cast(pl.Utf8))
        raw = _decoded_bytes(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # Legacy exports are often Latin-1; every byte decodes, so nothing is lost.
            text = raw.decode("latin-1")
        if ".jsonl" in name:
            frame = pl.read_ndjson(io.StringIO(text), infer_schema_length=None)
            return frame.select(pl.all().cast(pl.Utf8))
        return pl.read_csv(
            io.StringIO(text), infer_schema=False, missing_utf8_is_empty_string=False
        )
    except IngestError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IngestError(f"{path}: cannot be read ({first})") from exc
