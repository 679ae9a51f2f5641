"""Physical lines of a CDR file, in batches, as a Polars frame of raw text.

Every row keeps its 1-based physical line number, so quarantine reports and record
``source_line`` point at the right line even across batches, blank lines and headers.
A record is one physical line: a quoted field cannot span lines (no switch writes one).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import polars as pl

GZIP_MAGIC = b"\x1f\x8b"
BOM = "\ufeff"


def open_binary(path: Path) -> BinaryIO:
    """Open plain or gzip-compressed files (recognised by content, not by suffix)."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def decode(data: bytes) -> str:
    """UTF-8; lines that are not UTF-8 are read as Latin-1 (never fails, nothing lost)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        parts = []
        for line in data.splitlines(keepends=True):
            try:
                parts.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                parts.append(line.decode("latin-1"))
        return "".join(parts)


@dataclass(frozen=True)
class LineBatch:
    frame: (
        pl.DataFrame
    )  # _line (Int64, 1-based), _raw (String, no line ending); blank lines removed
    lines_read: int  # physical lines in this batch, blank ones included


def iter_line_batches(path: Path, batch_rows: int) -> Iterator[LineBatch]:
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    first = 1
    with open_binary(path) as handle:
        while True:
            lines = list(islice(handle, batch_rows))
            if not lines:
                return
            count = len(lines)
            text = decode(b"".join(lines))
            if first == 1 and text.startswith(BOM):
                text = text[1:]
            frame = to_frame(text, first, count)
            yield LineBatch(frame=frame, lines_read=count)
            first += count


def to_frame(text: str, first_line: int, count: int) -> pl.DataFrame:
    raw = pl.Series("_raw", [text]).str.split("\n").explode().head(count)
    frame = pl.DataFrame(
        {
            "_line": pl.int_range(first_line, first_line + count, dtype=pl.Int64, eager=True),
            "_raw": raw.str.strip_suffix("\r"),
        }
    )
    return frame.filter(pl.col("_raw").str.strip_chars() != "")


def sample_lines(path: Path, limit: int = 50) -> list[tuple[int, str]]:
    """The first ``limit`` non-blank lines as (line number, text)."""
    out: list[tuple[int, str]] = []
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            text = decode(raw).rstrip("\r\n")
            if number == 1:
                text = text.removeprefix(BOM)
            if text.strip():
                out.append((number, text))
                if len(out) >= limit:
                    break
    return out
