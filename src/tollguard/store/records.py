"""Rated records, quarantined lines and ingest batches: idempotent bulk writes.

Every write here runs inside a transaction the caller owns (``engine.begin()``), so a
caller can commit records, quarantined lines and a source position together: after a
crash either all of them are there or none is.

Records are first bulk-loaded into a per-connection staging table (COPY on PostgreSQL,
``executemany`` on SQLite), then moved with one
``INSERT ... SELECT ... ON CONFLICT (record_id) DO NOTHING RETURNING record_id``:
the same record twice changes nothing, and the caller learns exactly which ids are new.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from tollguard.cdr.model import NUMBERING_SCHEMA, RATING_SCHEMA, RECORD_SCHEMA, UTC_DATETIME
from tollguard.cdr.quarantine import QuarantinedLine
from tollguard.policy import Policy
from tollguard.store.schema import (
    RATED_COLUMNS,
    ingest_batches,
    quarantined_lines,
    rated_records,
)

FRAME_COLUMNS: list[str] = [*RECORD_SCHEMA, *NUMBERING_SCHEMA, *RATING_SCHEMA]
STORED_COLUMNS: list[str] = [c.name for c in RATED_COLUMNS]
_TIME_COLUMNS = ("start", "answer", "end", "ingested_at")
STAGE = "rated_stage"


def new_batch_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_day_expr(policy: Policy | None, accounts: Iterable[str] = ()) -> pl.Expr:
    """Calendar day of the call start in the account's time zone (policy's, else UTC)."""
    default_tz = (policy.defaults.timezone if policy else None) or "UTC"
    start = pl.col("start")
    expr = start.dt.convert_time_zone(default_tz).dt.date()
    if policy is None:
        return expr.alias("local_day")
    wanted = set(accounts)
    for name, own in policy.accounts.items():
        if own.timezone and own.timezone != default_tz and (not wanted or name in wanted):
            tz_day = start.dt.convert_time_zone(own.timezone).dt.date()
            expr = pl.when(pl.col("account") == name).then(tz_day).otherwise(expr)
    return expr.alias("local_day")


def to_stored(
    rated: pl.DataFrame, policy: Policy | None, batch_id: str, ingested_at: datetime
) -> pl.DataFrame:
    """A rated frame (RECORD + NUMBERING + RATING columns) to ``rated_records`` columns."""
    missing = {
        name: dtype
        for name, dtype in {**RECORD_SCHEMA, **NUMBERING_SCHEMA, **RATING_SCHEMA}.items()
        if name not in rated.columns
    }
    frame = rated.with_columns([pl.lit(None, dtype).alias(n) for n, dtype in missing.items()])
    accounts = frame.get_column("account").unique().to_list() if frame.height else []
    frame = frame.with_columns(
        local_day_expr(policy, accounts),
        pl.lit(ingested_at.astimezone(UTC)).dt.cast_time_unit("us").alias("ingested_at"),
        pl.lit(batch_id).alias("batch_id"),
    )
    return frame.select(STORED_COLUMNS)


def _text_times(frame: pl.DataFrame, pg: bool) -> pl.DataFrame:
    """Times as the text each database reads exactly (UTC, microseconds)."""
    fmt = "%Y-%m-%d %H:%M:%S.%6f" + ("+00" if pg else "")
    return frame.with_columns(
        *[
            pl.col(c).dt.convert_time_zone("UTC").dt.strftime(fmt)
            if frame.schema[c] != pl.String
            else pl.col(c)
            for c in _TIME_COLUMNS
        ],
        pl.col("local_day").dt.strftime("%Y-%m-%d"),
    )


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _ensure_stage(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} "
            "(LIKE rated_records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
    else:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} AS SELECT * FROM rated_records WHERE 0"
        )


def insert_rated(conn: Connection, stored: pl.DataFrame) -> list[str]:
    """Insert rows (``to_stored`` output); return the record ids that were new.

    Duplicates (already stored, or repeated in ``stored``) are skipped, never updated.
    """
    if stored.height == 0:
        return []
    pg = conn.dialect.name == "postgresql"
    _ensure_stage(conn)
    text = _text_times(stored, pg)
    cols = _quoted(STORED_COLUMNS)
    if pg:
        buf = io.BytesIO()
        text.write_csv(buf, include_header=False, null_value="\\N", quote_style="necessary")
        raw = conn.connection.driver_connection
        assert raw is not None
        copy_sql = f"COPY {STAGE} ({cols}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
        with raw.cursor() as cur, cur.copy(copy_sql) as copy:  # type: ignore[attr-defined]
            copy.write(buf.getvalue())
        where = ""
    else:
        marks = ", ".join("?" for _ in STORED_COLUMNS)
        conn.exec_driver_sql(f"DELETE FROM {STAGE}")
        conn.exec_driver_sql(
            f"INSERT INTO {STAGE} ({cols}) VALUES ({marks})", list(text.iter_rows())
        )
        where = " WHERE true"  # SQLite: disambiguates ON CONFLICT after SELECT
    result = conn.exec_driver_sql(
        f"INSERT INTO rated_records ({cols}) SELECT {cols} FROM {STAGE}{where} "
        "ON CONFLICT (record_id) DO NOTHING RETURNING record_id"
    )
    new_ids = [row[0] for row in result]
    conn.exec_driver_sql(f"DELETE FROM {STAGE}")
    return new_ids


@dataclass(frozen=True)
class QuarantineEntry:
    """A line to keep: where it came from, why it was refused, and its text."""

    source: str
    position: int
    reason: str
    raw: str
    format: str | None = None
    header: str | None = None
    discriminator: str = ""  # e.g. line index inside one NATS message

    @classmethod
    def from_line(
        cls, q: QuarantinedLine, fmt: str | None = None, header: str | None = None
    ) -> QuarantineEntry:
        return cls(q.source_file, q.line, q.reason, q.raw, fmt, header)

    @property
    def key(self) -> str:
        text = "\x1f".join([self.source, str(self.position), self.discriminator, self.raw])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dialect_insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    return insert(table)


def insert_quarantined(
    conn: Connection, entries: Sequence[QuarantineEntry], batch_id: str, now: datetime
) -> int:
    """Keep refused lines; the same line from the same place twice is kept once."""
    if not entries:
        return 0
    stmt = dialect_insert(conn, quarantined_lines).on_conflict_do_nothing(
        index_elements=["line_key"]
    )
    rows = [
        {
            "line_key": e.key,
            "source": e.source,
            "position": e.position,
            "format": e.format,
            "header": e.header,
            "reason": e.reason,
            "raw": e.raw,
            "status": "open",
            "attempts": 0,
            "created_at": now,
            "batch_id": batch_id,
        }
        for e in entries
    ]
    result = conn.execute(stmt.returning(quarantined_lines.c.id), rows)
    return len(result.all())


def record_batch(
    conn: Connection,
    batch_id: str,
    source: str,
    now: datetime,
    *,
    received: int,
    inserted: int,
    quarantined: int,
) -> None:
    conn.execute(
        insert(ingest_batches).values(
            id=batch_id,
            source=source,
            committed_at=now,
            received=received,
            inserted=inserted,
            duplicates=received - inserted,
            quarantined=quarantined,
        )
    )


_FRAME_SCHEMA: dict[str, pl.DataType] = {**RECORD_SCHEMA, **NUMBERING_SCHEMA, **RATING_SCHEMA}


def latest_start(engine: Engine) -> datetime | None:
    """Start of the newest stored call (UTC), or None for an empty store."""
    with engine.connect() as conn:
        value = conn.execute(select(func.max(rated_records.c.start))).scalar_one_or_none()
    if isinstance(value, str):  # SQLite aggregate: the stored text
        value = datetime.fromisoformat(value)
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def load_rated_frames(
    engine: Engine, since: datetime, *, chunk: int = 50_000
) -> Iterator[pl.DataFrame]:
    """Stored records whose call started at or after ``since``, in call-end order, as
    rated frames (RECORD + NUMBERING + RATING columns), ``chunk`` rows at a time."""
    cols = [rated_records.c[name] for name in FRAME_COLUMNS]
    query = (
        select(*cols)
        .where(rated_records.c.start >= since.astimezone(UTC))
        .order_by(rated_records.c.end, rated_records.c.record_id)
    )
    times = [i for i, name in enumerate(FRAME_COLUMNS) if _FRAME_SCHEMA[name] == UTC_DATETIME]
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(query)
        for part in result.partitions(chunk):
            rows = [list(row) for row in part]
            for row in rows:
                for i in times:
                    value = row[i]
                    if value is not None and value.tzinfo is None:  # SQLite: naive UTC
                        row[i] = value.replace(tzinfo=UTC)
            yield pl.DataFrame(rows, schema=_FRAME_SCHEMA, orient="row")


__all__ = [
    "FRAME_COLUMNS",
    "STORED_COLUMNS",
    "QuarantineEntry",
    "insert_quarantined",
    "insert_rated",
    "latest_start",
    "load_rated_frames",
    "local_day_expr",
    "new_batch_id",
    "rated_records",
    "record_batch",
    "to_stored",
    "utcnow",
]
