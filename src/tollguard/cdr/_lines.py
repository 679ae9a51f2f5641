"""Physical lines of a CDR file, in batches of raw bytes.

Every row keeps its 1-based physical line number, so quarantine reports and record
``source_line`` point at the right line even across batches, blank lines and headers.
A record is one physical line: a quoted field cannot span lines (no switch writes one).
"""

from __future__ import annotations

import contextlib
import gzip
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
import polars as pl

GZIP_MAGIC = b"\x1f\x8b"
BOM = "\ufeff"
BOM_BYTES = b"\xef\xbb\xbf"
READ_SIZE = 1 << 23
T = TypeVar("T")


def is_gzip(path: Path) -> bool:
    """Gzip-compressed (recognised by content, not by suffix)."""
    with path.open("rb") as probe:
        return probe.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> BinaryIO:
    """Open plain or gzip-compressed files (recognised by content, not by suffix)."""
    if is_gzip(path):
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


def nth_newline(data: bytes, start: int, n: int) -> int:
    """Offset of the ``n``-th (1-based) b"\\n" at or after ``start``; it must exist."""
    if n <= 32:
        cut = start - 1
        for _ in range(n):
            cut = data.index(b"\n", cut + 1)
        return cut
    # Vectorized over a window sized from the average line length, grown if short.
    probe = 1 << 16
    per_line = probe // max(data.count(b"\n", start, start + probe), 1)
    window = max(probe, per_line * n * 9 // 8)
    found = 0
    while True:
        end = min(len(data), start + window)
        part = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)
        offsets = np.flatnonzero(part == 10)
        if found + len(offsets) >= n:
            return start + int(offsets[n - found - 1])
        found += len(offsets)
        start, window = end, window * 2


def iter_blocks(path: Path, batch_rows: int) -> Iterator[RawBlock]:
    """Blocks of at most ``batch_rows`` physical lines (the last line gets a b"\\n").

    Reads are kept as they came; a block is copied out of them once.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    first = 1
    parts: list[bytes] = []  # unread data: parts[0][skip:], parts[1], ...
    counts: list[int] = []  # newlines in each part (in parts[0] from skip on)
    skip, pending = 0, 0  # pending = sum(counts)
    at_start, eof = True, False
    with open_binary(path) as handle:
        while True:
            while pending < batch_rows and not eof:
                data = handle.read(READ_SIZE)
                if not data:
                    eof = True
                    break
                if at_start:
                    data, at_start = data.removeprefix(BOM_BYTES), False
                if data:
                    parts.append(data)
                    counts.append(data.count(b"\n"))
                    pending += counts[-1]
            if eof and parts and not parts[-1].endswith(b"\n"):
                parts.append(b"\n")
                counts.append(1)
                pending += 1
            if not pending:
                return
            want = min(batch_rows, pending)
            i, taken = 0, 0
            while taken + counts[i] < want:
                taken += counts[i]
                i += 1
            part = parts[i]
            cut = nth_newline(part, skip if i == 0 else 0, want - taken) + 1
            if i == 0:
                block = part[skip:cut]
            else:
                head = memoryview(parts[0])[skip:]
                block = b"".join([head, *parts[1:i], memoryview(part)[:cut]])
            if cut == len(part):
                parts, counts, skip = parts[i + 1 :], counts[i + 1 :], 0
            else:
                parts, counts, skip = parts[i:], [counts[i] - (want - taken), *counts[i + 1 :]], cut
            pending -= want
            yield RawBlock(block, first, want)
            first += want


_DONE = object()


def prefetch(items: Iterator[T]) -> Iterator[T]:
    """``items``, produced one ahead in a background thread.

    Reading and decompressing the next block then overlaps with work on this one.
    An exception from ``items`` is raised where it came, after the items before it.
    """
    slot: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                slot.put((item, None))
                if stop.is_set():
                    return
            slot.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer
            slot.put((_DONE, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="tollguard-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slot.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():  # let a waiting put through, so the worker ends
            with contextlib.suppress(queue.Empty):
                slot.get(timeout=0.05)
        worker.join()


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
