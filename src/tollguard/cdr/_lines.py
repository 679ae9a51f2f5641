"""Physical lines of a CDR file, in batches of raw bytes.

Every row keeps its 1-based physical line number, so quarantine reports and record
``source_line`` point at the right line even across batches, blank lines and headers.
A record is one physical line: a quoted field cannot span lines (no switch writes one).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

GZIP_MAGIC = b"\x1f\x8b"
BOM = "\ufeff"
BOM_BYTES = b"\xef\xbb\xbf"
READ_SIZE = 1 << 23


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
class RawBlock:
    data: bytes  # whole lines, each ending with b"\n"
    first_line: int  # 1-based physical line number of the first line
    lines: int  # physical lines in this block, blank ones included

    def newlines(self) -> np.ndarray:  # type: ignore[type-arg]
        return np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 10)

    def text_frame(self) -> pl.DataFrame:
        """``_line`` (Int64) and ``_raw`` (String, no line ending), blank lines removed."""
        text = decode(self.data)
        raw = pl.Series("_raw", [text]).str.split("\n").explode().head(self.lines)
        frame = pl.DataFrame(
            {
                "_line": pl.int_range(
                    self.first_line, self.first_line + self.lines, dtype=pl.Int64, eager=True
                ),
                "_raw": raw.str.strip_suffix("\r"),
            }
        )
        return frame.filter(pl.col("_raw").str.strip_chars() != "")


def iter_blocks(path: Path, batch_rows: int) -> Iterator[RawBlock]:
    """Blocks of at most ``batch_rows`` physical lines (the last line gets a b"\\n")."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    first = 1
    buf, pos, buf_lines = b"", 0, 0  # unread data is buf[pos:], holding buf_lines newlines
    scan_from, lines_before = 0, 0  # no newline-count-th newline before scan_from
    eof = False
    with open_binary(path) as handle:
        while True:
            if buf_lines < batch_rows and not eof:
                parts = [buf[pos:]]
                scan_from, lines_before = len(parts[0]), buf_lines
                while buf_lines < batch_rows:
                    data = handle.read(READ_SIZE)
                    if not data:
                        eof = True
                        break
                    if first == 1 and len(parts) == 1 and not parts[0]:
                        data = data.removeprefix(BOM_BYTES)
                    parts.append(data)
                    buf_lines += data.count(b"\n")
                buf, pos = b"".join(parts), 0
                if eof and buf and not buf.endswith(b"\n"):
                    buf += b"\n"
                    buf_lines += 1
            if pos >= len(buf):
                return
            if buf_lines > batch_rows:
                if scan_from < pos:
                    scan_from, lines_before = pos, 0
                cut = scan_from - 1
                for _ in range(batch_rows - lines_before):
                    cut = buf.index(b"\n", cut + 1)
                block, count = buf[pos : cut + 1], batch_rows
                pos = scan_from = cut + 1
                lines_before = 0
            else:  # exactly batch_rows newlines, or the end of the file
                last = buf.rindex(b"\n") + 1
                block, count = buf[pos:last], buf_lines
                pos = last
            buf_lines -= count
            yield RawBlock(block, first, count)
            first += count


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
