"""The tamper-evident audit log: a hash chain over every alert, notification, action and
policy change.

Each entry is ``{seq, at, actor, action, subject, data}``. Its hash is
``SHA-256(prev_hash_hex + canonical_json(entry))`` where canonical JSON is UTF-8, keys
sorted, no whitespace (orjson ``OPT_SORT_KEYS``); the first entry's ``prev_hash`` is 64
zeros. Changing, removing or reordering any entry breaks every hash after it, and
``verify`` names the first entry that does not match. ``prev_hash`` is UNIQUE in the
table, so two writers can never fork the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, text

from tollguard.store.cases_schema import audit_log

GENESIS = "0" * 64


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(entry)).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": _iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "data": self.data,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "prev_hash": self.prev_hash, "hash": self.hash}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's transaction (so it commits with the change)."""
    if conn.dialect.name == "postgresql":  # serialize appenders; released at commit
        conn.execute(text("SELECT pg_advisory_xact_lock(7340213)"))
    at = (at or datetime.now(UTC)).astimezone(UTC)
    # Round-trip precision of every backend is microseconds.
    last = conn.execute(
        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq = 1 if last is None else int(last.seq) + 1
    prev = GENESIS if last is None else str(last.hash)
    payload = orjson.loads(canonical_json(data or {}))  # normalize (datetimes, Decimals as str)
    body = {
        "seq": seq,
        "at": _iso(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "data": payload,
    }
    digest = entry_hash(prev, body)
    conn.execute(
        audit_log.insert().values(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            data=canonical_json(payload).decode("utf-8"),
            prev_hash=prev,
            hash=digest,
        )
    )
    return AuditEntry(seq, at, actor, action, subject, payload, prev, digest)


def read(conn: Connection, *, since: int = 0, limit: int | None = None) -> Iterator[AuditEntry]:
    query = select(audit_log).where(audit_log.c.seq > since).order_by(audit_log.c.seq)
    if limit is not None:
        query = query.limit(limit)
    for row in conn.execute(query):
        yield _from_row(row._mapping)


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


class _Unreadable(ValueError):
    pass


def _from_row(row: Any) -> AuditEntry:
    try:
        data = orjson.loads(row["data"])
    except orjson.JSONDecodeError as exc:
        raise _Unreadable(f"data is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _Unreadable("data is not a JSON object")
    at = row["at"]
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return AuditEntry(
        int(row["seq"]),
        at,
        str(row["actor"]),
        str(row["action"]),
        str(row["subject"]),
        data,
        str(row["prev_hash"]),
        str(row["hash"]),
    )


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad: int | None = None  # seq (or 1-based line for files) of the first bad entry
    reason: str = ""
    head: str = GENESIS  # hash of the last good entry

    def message(self) -> str:
        if self.ok:
            return f"audit log OK: {self.checked} entries, head {self.head}"
        return f"audit log BROKEN at entry {self.first_bad}: {self.reason}"


def verify_entries(rows: Iterable[Any | Exception]) -> VerifyResult:
    """Check a sequence of rows (mappings with the table's columns) in chain order."""
    prev = GENESIS
    expected_seq = 1
    checked = 0
    for position, row in enumerate(rows, start=1):
        if isinstance(row, Exception):
            return VerifyResult(False, checked, position, str(row), prev)
        try:
            entry = _from_row(row)
        except (_Unreadable, KeyError, ValueError, TypeError) as exc:
            seq = row.get("seq", position) if hasattr(row, "get") else position
            return VerifyResult(False, checked, int(seq), f"unreadable entry: {exc}", prev)
        if entry.seq != expected_seq:
            return VerifyResult(
                False, checked, entry.seq, f"expected seq {expected_seq}, found {entry.seq}", prev
            )
        if entry.prev_hash != prev:
            return VerifyResult(
                False, checked, entry.seq, "prev_hash does not match the previous entry", prev
            )
        stored = row["data"]
        if isinstance(stored, str) and stored != canonical_json(entry.data).decode("utf-8"):
            return VerifyResult(False, checked, entry.seq, "data is not in canonical form", prev)
        if entry_hash(prev, entry.body()) != entry.hash:
            return VerifyResult(
                False, checked, entry.seq, "hash does not match the entry's content", prev
            )
        prev = entry.hash
        expected_seq += 1
        checked += 1
    return VerifyResult(True, checked, None, "", prev)


def verify_db(conn: Connection) -> VerifyResult:
    rows = (r._mapping for r in conn.execute(select(audit_log).order_by(audit_log.c.seq)))
    return verify_entries(rows)


def export_jsonl(conn: Connection, path: Path) -> int:
    """Write the log as JSON Lines (one entry per line, stored form), return the count."""
    n = 0
    with path.open("wb") as fh:
        for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)):
            m = {str(k): v for k, v in row._asdict().items()}
            m["at"] = _iso(m["at"])
            fh.write(orjson.dumps(m) + b"\n")
            n += 1
    return n


def verify_file(path: Path) -> VerifyResult:
    """Verify an exported JSON Lines log; a line that is not JSON is a bad entry."""

    def rows() -> Iterator[Any]:
        with path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield ValueError(f"line {number} is not valid JSON ({exc})")
                    return
                if not isinstance(row, dict):
                    yield ValueError(f"line {number} is not a JSON object")
                    return
                yield row

    return verify_entries(rows())
