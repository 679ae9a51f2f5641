"""Where a watched file was read up to (one row per watched path)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from tollguard.store.records import dialect_insert, utcnow
from tollguard.store.schema import ingest_positions


@dataclass(frozen=True)
class Position:
    path: str
    device: int
    inode: int
    offset: int
    line: int
    fingerprint: str
    fp_len: int
    format: str | None = None
    header: str | None = None


def load_position(conn: Connection, path: str) -> Position | None:
    row = conn.execute(select(ingest_positions).where(ingest_positions.c.path == path)).first()
    if row is None:
        return None
    m = row._mapping
    return Position(
        m["path"], m["device"], m["inode"], m["offset"], m["line"], m["fingerprint"],
        m["fp_len"], m["format"], m["header"],
    )  # fmt: skip


def save_position(conn: Connection, pos: Position) -> None:
    values = {
        "path": pos.path,
        "device": pos.device,
        "inode": pos.inode,
        "offset": pos.offset,
        "line": pos.line,
        "fingerprint": pos.fingerprint,
        "fp_len": pos.fp_len,
        "format": pos.format,
        "header": pos.header,
        "updated_at": utcnow(),
    }
    stmt = dialect_insert(conn, ingest_positions)
    stmt = stmt.on_conflict_do_update(
        index_elements=["path"], set_={k: v for k, v in values.items() if k != "path"}
    )
    conn.execute(stmt, values)
