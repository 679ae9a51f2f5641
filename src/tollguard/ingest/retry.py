"""List quarantined lines and re-ingest them after a fix (a corrected line, or a format).

A retried line that now reads is stored as a record and its quarantine row is marked
``reingested`` in the SAME transaction; one that still fails keeps status ``open`` with
the new reason and one more attempt counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Engine, select, update

from tollguard.cdr.detect import CdrFormatError
from tollguard.ingest.core import Ingestor
from tollguard.ingest.lines import LineParser
from tollguard.store.records import insert_rated, new_batch_id, to_stored, utcnow
from tollguard.store.schema import quarantined_lines


@dataclass(frozen=True)
class QuarantineRow:
    id: int
    source: str
    position: int
    format: str | None
    header: str | None
    reason: str
    raw: str
    corrected_raw: str | None
    status: str
    attempts: int
    created_at: datetime
    reingested_at: datetime | None
    record_id: str | None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("created_at", "reingested_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


def list_quarantined(
    engine: Engine, status: str | None = "open", limit: int | None = None
) -> list[QuarantineRow]:
    q = quarantined_lines.c
    query = select(
        q.id, q.source, q.position, q.format, q.header, q.reason, q.raw, q.corrected_raw,
        q.status, q.attempts, q.created_at, q.reingested_at, q.record_id,
    ).order_by(q.id)  # fmt: skip
    if status is not None:
        query = query.where(q.status == status)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [QuarantineRow(**row._mapping) for row in conn.execute(query)]


@dataclass
class RetryOutcome:
    id: int
    ok: bool
    record_id: str | None = None
    inserted: bool = False  # False when the record was already stored (a duplicate)
    reason: str | None = None


@dataclass
class RetryResult:
    outcomes: list[RetryOutcome] = field(default_factory=list)

    @property
    def reingested(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def still_bad(self) -> int:
        return sum(1 for o in self.outcomes if not o.ok)


def _parse_one(
    ingestor: Ingestor, row: QuarantineRow, text: str, fmt: str | None
) -> tuple[pl.DataFrame | None, str | None]:
    chosen = fmt or row.format or ingestor.fmt
    sample = [row.header, text] if row.header and chosen not in {"jsonl"} else [text]
    try:
        parser = LineParser.for_sample(
            sample,
            chosen,
            ingestor.policy.dialing_context(),
            source_file=row.source,
            assume_utc=ingestor.assume_utc,
        )
    except CdrFormatError as exc:
        return None, str(exc)
    # Parse the line under its own position; the header (if any) only fixed the layout.
    parser = dataclasses.replace(
        parser, plan=dataclasses.replace(
            parser.plan, detected=dataclasses.replace(parser.plan.detected, header_line=0)
        )
    )  # fmt: skip
    frame = pl.DataFrame({"_line": pl.Series([row.position], dtype=pl.Int64), "_raw": [text]})
    parsed = parser.parse_frame(frame)
    if parsed.quarantined:
        return None, parsed.quarantined[0].reason
    if parsed.frame.height == 0:
        return None, "the line holds no record"
    return parsed.frame, None


def retry_quarantined(
    ingestor: Ingestor,
    ids: Sequence[int] | None = None,
    *,
    fmt: str | None = None,
    corrected: str | None = None,
) -> RetryResult:
    """Re-read quarantined lines (``ids``, or every open one) and store what now reads."""
    rows = list_quarantined(ingestor.engine, status=None if ids else "open")
    if ids:
        wanted = set(ids)
        rows = [r for r in rows if r.id in wanted]
        missing = wanted - {r.id for r in rows}
        if missing:
            raise KeyError(f"no quarantined line with id {', '.join(map(str, sorted(missing)))}")
    result = RetryResult()
    q = quarantined_lines.c
    for row in rows:
        if row.status == "reingested":
            result.outcomes.append(RetryOutcome(row.id, True, row.record_id, False))
            continue
        text = corrected if corrected is not None else (row.corrected_raw or row.raw)
        frame, reason = _parse_one(ingestor, row, text, fmt)
        now = utcnow()
        changed = {"corrected_raw": text} if text != row.raw else {}
        if frame is None:
            with ingestor.engine.begin() as conn:
                conn.execute(
                    update(quarantined_lines)
                    .where(q.id == row.id)
                    .values(reason=reason or row.reason, attempts=q.attempts + 1, **changed)
                )
            result.outcomes.append(RetryOutcome(row.id, False, reason=reason))
            continue
        rated = ingestor.rate(frame)
        batch_id = new_batch_id()
        stored = to_stored(rated, ingestor.policy, batch_id, now)
        record_id = str(stored.get_column("record_id")[0])
        with ingestor.engine.begin() as conn:
            new_ids = insert_rated(conn, stored)
            conn.execute(
                update(quarantined_lines)
                .where(q.id == row.id)
                .values(
                    status="reingested",
                    reingested_at=now,
                    record_id=record_id,
                    attempts=q.attempts + 1,
                    batch_id=batch_id,
                    **changed,
                )
            )
        result.outcomes.append(RetryOutcome(row.id, True, record_id, bool(new_ids)))
    return result
