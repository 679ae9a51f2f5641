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
from collections.abc import Iterator, Sequence
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


def count_byte(data: bytes, byte: int) -> int:
    """How often ``byte`` occurs in ``data`` (faster than ``bytes.count`` for one byte)."""
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == byte))


class RawBlock:
    """Whole physical lines, each ending with b"\\n", numbered from ``first_line``.

    Held as one or more pieces that each end at a line end (as read), so a block of
    tens of megabytes need not be copied into one buffer; ``data`` joins them when
    asked.
    """

    __slots__ = ("_data", "first_line", "lines", "pieces")

    def __init__(self, data: bytes | Sequence[bytes], first_line: int, lines: int) -> None:
        self.pieces: tuple[bytes, ...] = (data,) if isinstance(data, bytes) else tuple(data)
        self.first_line = first_line  # 1-based physical line number of the first line
        self.lines = lines  # physical lines in this block, blank ones included
        self._data: bytes | None = self.pieces[0] if len(self.pieces) == 1 else None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = b"".join(self.pieces)
        return self._data

    def __repr__(self) -> str:
        size = sum(len(p) for p in self.pieces)
        return f"RawBlock(first_line={self.first_line}, lines={self.lines}, bytes={size})"

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

    Each read is cut at its last line end (the rest goes with the next read); a block
    is a run of such pieces, the last one cut at the block's last line.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    first = 1
    pieces: list[bytes] = []  # unread whole lines: pieces[0][skip:], pieces[1], ...
    counts: list[int] = []  # lines in each piece (in pieces[0] from skip on)
    skip, pending = 0, 0  # pending = sum(counts)
    carry = b""  # a line begun in the last read
    at_start, eof = True, False

    def add(piece: bytes) -> None:
        nonlocal pending
        pieces.append(piece)
        counts.append(count_byte(piece, 10))
        pending += counts[-1]

    with open_binary(path) as handle:
        while True:
            while pending < batch_rows and not eof:
                data = handle.read(READ_SIZE)
                if at_start:
                    data, at_start = data.removeprefix(BOM_BYTES), False
                if not data:
                    eof = True
                    if carry:
                        add(carry + b"\n")
                        carry = b""
                    break
                end = data.rfind(b"\n") + 1
                if end == 0:
                    carry += data
                    continue
                if carry:
                    add(carry + data[:end])
                else:
                    add(data if end == len(data) else data[:end])
                carry = data[end:]
            if not pending:
                return
            want = min(batch_rows, pending)
            i, taken = 0, 0
            while taken + counts[i] < want:
                taken += counts[i]
                i += 1
            start = skip if i == 0 else 0
            piece = pieces[i]
            cut = nth_newline(piece, start, want - taken) + 1
            block = [pieces[0][skip:] if skip else pieces[0], *pieces[1:i]] if i else []
            block.append(piece[start:cut] if start or cut < len(piece) else piece)
            if cut == len(piece):
                pieces, counts, skip = pieces[i + 1 :], counts[i + 1 :], 0
            else:
                pieces, counts, skip = (
                    pieces[i:],
                    [counts[i] - (want - taken), *counts[i + 1 :]],
                    cut,
                )
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
