"""Follow a growing CDR file (Asterisk's Master.csv) without losing or repeating a line.

The position (device, inode, byte offset, line number, and a fingerprint of the
file's first bytes) is committed in the same transaction as the records read up to
it, so a crash at any moment resumes exactly after the last committed line.

* Only complete lines are consumed: a last line without its newline waits.
* Rename rotation (``mv Master.csv Master.csv.1`` + a new file): the old file is found
  again by its inode among its siblings (or by fingerprint, if it was copied), read to
  its end, and only then is the new file read from its start. While following, the old
  file is drained until it has been quiet for ``rotate_grace`` seconds, because the
  switch may still write to it until it reopens its log.
* copytruncate (copy to Master.csv.1, truncate in place): the file is smaller than the
  offset, or its first bytes changed. The rest of the old content is read from the
  sibling whose first bytes match the fingerprint, then the file from its start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tollguard.cdr.blocks import decode
from tollguard.cdr.detect import CdrFormatError
from tollguard.ingest.core import Ingestor, IngestResult
from tollguard.ingest.lines import LineParser
from tollguard.store.positions import Position, load_position, save_position
from tollguard.store.records import QuarantineEntry

log = logging.getLogger(__name__)

__all__ = ["FileFollower", "FollowStats", "Position", "load_position", "save_position"]

FP_MAX = 1024  # bytes of the file's start kept as its fingerprint
DEFAULT_BATCH_LINES = 20_000
DEFAULT_BATCH_BYTES = 8 << 20


def _fingerprint(fd: int, length: int) -> str:
    return hashlib.sha256(os.pread(fd, length, 0)).hexdigest()


@dataclass
class _Open:
    """A file being read: its handle, identity and layout."""

    path: Path
    fd: int
    device: int
    inode: int
    parser: LineParser | None = None
    rotated: bool = False  # the watched path no longer names this file
    last_growth: float = field(default_factory=time.monotonic)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class FollowStats:
    result: IngestResult
    batches: int = 0
    rotations: int = 0
    warnings: list[str] = field(default_factory=list)


class FileFollower:
    """Reads new complete lines of ``path`` and commits them with the position."""

    def __init__(
        self,
        ingestor: Ingestor,
        path: Path,
        *,
        fmt: str = "auto",
        batch_lines: int = DEFAULT_BATCH_LINES,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        poll_interval: float = 0.5,
        rotate_grace: float = 2.0,
    ) -> None:
        self.ingestor = ingestor
        self.path = path.absolute()
        self.key = str(self.path)
        self.fmt = fmt
        self.batch_lines = batch_lines
        self.batch_bytes = batch_bytes
        self.poll_interval = poll_interval
        self.rotate_grace = rotate_grace
        self.stats = FollowStats(IngestResult(source=self.key))
        self.pos: Position | None = None
        self.current: _Open | None = None

    # -- public ------------------------------------------------------------
    def run(self, *, once: bool = False, stop: threading.Event | None = None) -> FollowStats:
        """Follow until ``stop`` is set (or, with ``once``, until nothing is left)."""
        stop = stop or threading.Event()
        with self.ingestor.engine.connect() as conn:
            self.pos = load_position(conn, self.key)
        try:
            while not stop.is_set():
                progressed = self.step(final=once)
                if progressed:
                    continue
                if once:
                    break
                stop.wait(self.poll_interval)
        finally:
            if self.current is not None:
                self.current.close()
                self.current = None
        return self.stats

    def step(self, *, final: bool = False) -> bool:
        """Consume one batch (or make one rotation decision). True when something moved."""
        if self.current is None and not self._open_current(final):
            return False
        cur = self.current
        assert cur is not None
        if not cur.rotated and self._check_rotation(cur):
            return True
        cur = self.current
        assert cur is not None
        if self._consume(cur):
            return True
        if not cur.rotated:
            return False
        quiet = time.monotonic() - cur.last_growth >= self.rotate_grace
        if final or quiet:
            if self._consume(cur, take_partial=True):
                return True
            return self._switch_to_new()
        return False

    # -- opening and rotation ----------------------------------------------
    def _stat_path(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            return None

    def _siblings(self) -> list[Path]:
        parent = self.path.parent
        base = self.path.name
        try:
            names = sorted(os.listdir(parent))
        except OSError:
            return []
        return [parent / n for n in names if n != base and n.startswith(base.split(".")[0])]

    def _open_file(self, path: Path) -> _Open:
        fd = os.open(path, os.O_RDONLY)
        st = os.fstat(fd)
        return _Open(path, fd, st.st_dev, st.st_ino)

    def _matches(self, opened: _Open, pos: Position) -> bool:
        if opened.size() < pos.offset:
            return False
        if pos.fp_len == 0:
            return True
        return (
            opened.size() >= pos.fp_len and _fingerprint(opened.fd, pos.fp_len) == pos.fingerprint
        )

    def _find_old(self, pos: Position) -> _Open | None:
        """The file the position refers to, wherever rotation moved it."""
        # 1. by identity (rename rotation keeps the inode)
        for candidate in [self.path, *self._siblings()]:
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (pos.device, pos.inode):
                opened = self._open_file(candidate)
                if (opened.device, opened.inode) == (pos.device, pos.inode) and self._matches(
                    opened, pos
                ):
                    return opened
                opened.close()
        # 2. by content (copytruncate, or a copy): same first bytes, long enough
        return self._find_copy(pos)

    def _find_copy(self, pos: Position, exclude: tuple[int, int] | None = None) -> _Open | None:
        if pos.offset == 0:
            return None
        for candidate in self._siblings():
            if candidate.suffix == ".gz":
                continue
            try:
                opened = self._open_file(candidate)
            except OSError:
                continue
            if (opened.device, opened.inode) != exclude and self._matches(opened, pos):
                return opened
            opened.close()
        return None

    def _open_current(self, final: bool) -> bool:
        pos = self.pos
        st = self._stat_path()
        if pos is None:
            if st is None:
                return False
            opened = self._open_file(self.path)
            if not self._ensure_parser(opened, final):
                opened.close()
                return False
            self.pos = Position(
                self.key, opened.device, opened.inode, 0, 0, "", 0,
                opened.parser.format if opened.parser else None, self._header(opened),
            )  # fmt: skip
            self.current = opened
            return True
        old = self._find_old(pos)
        if old is not None:
            old.rotated = st is None or (st.st_dev, st.st_ino) != (old.device, old.inode)
            if not self._ensure_parser(old, final, pos):
                old.close()
                return False
            self.current = old
            return True
        if st is None:
            return False
        # The position's file is gone (deleted, compressed) or was truncated with no copy.
        self._lost_rest(pos)
        return self._start_new_file(final)

    def _start_new_file(self, final: bool) -> bool:
        try:
            opened = self._open_file(self.path)
        except FileNotFoundError:
            return False
        if not self._ensure_parser(opened, final):
            opened.close()
            return False
        new_pos = Position(
            self.key, opened.device, opened.inode, 0, 0, "", 0,
            opened.parser.format if opened.parser else None, self._header(opened),
        )  # fmt: skip
        with self.ingestor.engine.begin() as conn:
            save_position(conn, new_pos)
        self.pos = new_pos
        self.current = opened
        return True

    def _switch_to_new(self) -> bool:
        """The rotated file is read to its end: continue with the file now at the path."""
        cur = self.current
        st = self._stat_path()
        if st is None or cur is None:
            return False  # the new file is not there yet
        assert self.pos is not None
        if (st.st_dev, st.st_ino) == (cur.device, cur.inode) and self._matches(cur, self.pos):
            cur.rotated = False  # it came back
            return True
        cur.close()
        self.current = None
        self.stats.rotations += 1
        self._start_new_file(final=False)
        return True

    def _check_rotation(self, cur: _Open) -> bool:
        """Mark ``cur`` rotated (or swap in the copy holding its rest); True if changed."""
        pos = self.pos
        assert pos is not None
        st = self._stat_path()
        same = st is not None and (st.st_dev, st.st_ino) == (cur.device, cur.inode)
        if same and self._matches(cur, pos):
            return False
        if not same:
            cur.rotated = True  # renamed away: drain it, then take the new file
            cur.last_growth = time.monotonic()
            return True
        # Truncated or rewritten in place (copytruncate): the unread rest is in the copy.
        copy = self._find_copy(pos, exclude=(cur.device, cur.inode))
        cur.close()
        self.current = None
        if copy is None:
            self._lost_rest(pos)
            self.stats.rotations += 1
            self._start_new_file(final=False)
            return True
        copy.parser = cur.parser
        copy.rotated = True
        self.current = copy
        return True

    def _lost_rest(self, pos: Position) -> None:
        if pos.offset == 0:
            return
        message = (
            f"{self.key}: the file read up to line {pos.line} (byte {pos.offset}) was rotated "
            "or truncated and its rest cannot be found; reading the current file from its start"
        )
        log.warning(message)
        self.stats.warnings.append(message)

    def _header(self, opened: _Open) -> str | None:
        parser = opened.parser
        if parser is None or not parser.header_line:
            return None
        with open(opened.path, "rb") as fh:
            for i, raw in enumerate(fh, 1):
                if i == parser.header_line:
                    return decode(raw).rstrip("\r\n")
        return None

    def _ensure_parser(self, opened: _Open, final: bool, pos: Position | None = None) -> bool:
        if opened.parser is not None:
            return True
        fmt = (pos.format if pos is not None and pos.format else None) or self.fmt
        try:
            opened.parser = LineParser.for_file(
                opened.path,
                fmt,
                self.ingestor.policy.dialing_context(),
                assume_utc=self.ingestor.assume_utc,
                source_file=self.key,
            )
        except CdrFormatError as exc:
            if "has no lines" in str(exc) or opened.size() == 0:
                return False  # nothing to read yet
            if final:
                raise
            log.warning("%s: %s (retrying)", self.key, exc)
            return False
        return True

    # -- reading -------------------------------------------------------------
    def _consume(self, cur: _Open, take_partial: bool = False) -> bool:
        pos = self.pos
        assert pos is not None
        size = cur.size()
        if size <= pos.offset:
            return False
        data = os.pread(cur.fd, min(size - pos.offset, self.batch_bytes), pos.offset)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if not take_partial or len(data) < size - pos.offset:
                return False  # a partial line waits for its newline
            cut = len(data)
        chunk = data[:cut]
        count = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
        if count > self.batch_lines:
            end = -1
            for _ in range(self.batch_lines):
                end = chunk.index(b"\n", end + 1)
            chunk = chunk[: end + 1]
            count = self.batch_lines
        cur.last_growth = time.monotonic()
        self._commit_chunk(cur, chunk, count)
        return True

    def _commit_chunk(self, cur: _Open, chunk: bytes, count: int) -> None:
        pos = self.pos
        assert pos is not None and cur.parser is not None
        parsed = cur.parser.parse_bytes(chunk, pos.line + 1, count)
        header = pos.header
        entries = [
            QuarantineEntry(
                self.key, q.line, q.reason, q.raw, parsed.format, header,
                discriminator=f"{cur.device}:{cur.inode}",
            )
            for q in parsed.quarantined
        ]  # fmt: skip
        new_offset = pos.offset + len(chunk)
        fp_len = min(new_offset, FP_MAX)
        fingerprint = pos.fingerprint if fp_len == pos.fp_len else _fingerprint(cur.fd, fp_len)
        new_pos = replace(
            pos,
            device=cur.device,
            inode=cur.inode,
            offset=new_offset,
            line=pos.line + count,
            fingerprint=fingerprint,
            fp_len=fp_len,
        )
        result = self.ingestor.commit(
            self.key, parsed.frame, entries, position=lambda conn: save_position(conn, new_pos)
        )
        self.pos = new_pos
        self.stats.result.add(result)
        self.stats.batches += 1
