"""Landing files: finding them, naming their day, reading them as raw text columns."""

from __future__ import annotations

import codecs
import datetime as dt
import gzip
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl

from tasks.errors import NightrecError

DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|csv\.gz|parquet|jsonl|jsonl\.gz)$")


class IngestError(NightrecError, ValueError):
    """A landing file cannot be ingested; the message names the file and the problem."""

    hint = "fix the file and run the command again"


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


# 16 MiB: the peak memory of ingestion grows by about 20 MiB per MiB of chunk (Polars frames,
# pandas copies for the contract) while larger chunks are no faster
# (benchmarks/results/ingest_memory_chunks.md).
DEFAULT_CHUNK_BYTES = 16 * 2**20
PARQUET_BATCH_ROWS = 256 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _open_bytes(path: Path) -> BinaryIO:
    """The file's bytes as a stream: gunzipped on the fly, UTF-16 recoded to UTF-8."""
    # The caller closes the stream (a `with` around the result).
    stream: BinaryIO = gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")  # noqa: SIM115
    head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
    if head[:2] in UTF16_BOMS:
        return codecs.EncodedFile(stream, data_encoding="utf-8", file_encoding="utf-16")
    return stream


def _record_end(buffer: bytes, quoted: bool) -> int:
    """Index of the last newline that ends a record (outside CSV quotes); -1 if none."""
    pos = buffer.rfind(b"\n")
    while quoted and pos >= 0 and buffer.count(b'"', 0, pos) % 2:
        pos = buffer.rfind(b"\n", 0, pos)
    return pos


def _record_blocks(stream: BinaryIO, chunk_bytes: int, quoted: bool) -> Iterator[bytes]:
    """Blocks of about `chunk_bytes` that end on a record boundary (one record may be longer)."""
    carry = b""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            if carry.strip():
                yield carry
            return
        buffer = carry + block
        cut = _record_end(buffer, quoted)
        if cut < 0:
            carry = buffer
            continue
        yield buffer[: cut + 1]
        carry = buffer[cut + 1 :]


class _Decoder:
    """UTF-8, or Latin-1 once a block is not UTF-8 (legacy exports; every byte decodes)."""

    def __init__(self) -> None:
        self.encoding = "utf-8"

    def __call__(self, block: bytes) -> str:
        if self.encoding == "utf-8":
            try:
                return block.decode("utf-8")
            except UnicodeDecodeError:
                self.encoding = "latin-1"
        return block.decode("latin-1")


def _text_chunks(path: Path, chunk_bytes: int) -> Iterator[pl.DataFrame]:
    is_csv = ".csv" in path.name
    decode = _Decoder()
    with _open_bytes(path) as stream:
        header = stream.readline() if is_csv else b""
        if header.startswith(UTF8_BOM):
            header = header[len(UTF8_BOM) :]
        if "\x00" in decode(header):
            raise IngestError(f"{path}: binary content (NUL bytes); expected text")
        seen = False
        for block in _record_blocks(stream, chunk_bytes, quoted=is_csv):
            if not seen and not is_csv and block.startswith(UTF8_BOM):
                block = block[len(UTF8_BOM) :]
            text = decode(block)
            if "\x00" in text:
                raise IngestError(f"{path}: binary content (NUL bytes); expected text")
            seen = True
            if is_csv:
                yield pl.read_csv(
                    io.StringIO(decode(header) + text),
                    infer_schema=False,
                    missing_utf8_is_empty_string=False,
                )
            else:
                frame = pl.read_ndjson(io.StringIO(text), infer_schema_length=None)
                yield frame.select(pl.all().cast(pl.Utf8))
        if not seen:
            if not header.strip():
                raise IngestError(f"{path}: file is empty")
            # A header without rows: zero rows with the header's columns.
            yield pl.read_csv(io.StringIO(decode(header)), infer_schema=False)


def _parquet_chunks(path: Path) -> Iterator[pl.DataFrame]:
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(path)
    if not reader.schema_arrow.names:
        raise IngestError(f"{path}: file is empty")
    batches = 0
    for batch in reader.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        batches += 1
        yield pl.from_arrow(batch).select(pl.all().cast(pl.Utf8))
    if batches == 0:
        yield pl.from_arrow(reader.schema_arrow.empty_table()).select(pl.all().cast(pl.Utf8))


def iter_raw_chunks(path: Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[pl.DataFrame]:
    """A landing file as frames of text columns, about `chunk_bytes` of input at a time, so a
    file larger than memory streams through. Every failure is an IngestError naming the file."""
    chunks = (
        _parquet_chunks(path) if path.name.endswith(".parquet") else _text_chunks(path, chunk_bytes)
    )
    try:
        yield from chunks
    except IngestError:
        raise
    except (pl.exceptions.PolarsError, OSError, EOFError, ValueError, UnicodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, gzip.BadGzipFile | EOFError):
            raise IngestError(f"{path}: not a valid gzip file ({first})") from exc
        raise IngestError(f"{path}: cannot be read ({first})") from exc
    except Exception as exc:  # pyarrow raises its own types (ArrowInvalid, ...)
        if type(exc).__module__.startswith("pyarrow"):
            raise IngestError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
        raise


def read_raw(path: Path) -> pl.DataFrame:
    """All columns of a landing file as text, so that parsing and its failures are ours."""
    return pl.concat(list(iter_raw_chunks(path)), how="diagonal")
