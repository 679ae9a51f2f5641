"""The durable ingest step shared by every source (watched file, NATS, HTTP).

``Ingestor.commit`` prices a batch of records with the scan pipeline's own pieces
(numbering classifier, rater), then writes records, quarantined lines, the source's
position (a callback) and a batch row in ONE transaction. Record ids are stable, and
``ON CONFLICT DO NOTHING`` makes the same record twice a counted duplicate, so a
source may always resend after a crash.

For the HTTP API: ``Ingestor.ingest_lines(source, lines, fmt)``,
``Ingestor.ingest_frame(frame, source)`` and ``Ingestor.store_new(records, source)``
(``CallRecord`` objects in, the ones that were new out); ``on_new`` receives only the
records that were new, in a rated frame, after the commit (feed those to the detection
engine).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl
from sqlalchemy import Connection, Engine

from tollguard.cdr.detect import CdrFormatError
from tollguard.cdr.model import NUMBERING_SCHEMA, RATING_SCHEMA, RECORD_SCHEMA, CallRecord
from tollguard.ingest.lines import LineParser
from tollguard.policy import Policy, default_policy
from tollguard.scan import Scanner, ScanOptions
from tollguard.store.records import (
    QuarantineEntry,
    dialect_insert,
    insert_quarantined,
    insert_rated,
    new_batch_id,
    record_batch,
    to_stored,
    utcnow,
)
from tollguard.store.schema import accounts

NewRecordsHook = Callable[[pl.DataFrame], None]
PositionWriter = Callable[[Connection], None]


@dataclass
class IngestResult:
    source: str
    batch_id: str = ""
    received: int = 0  # records read from the input (valid lines)
    inserted: int = 0  # new records stored
    duplicates: int = 0  # records already stored (or repeated in the input)
    rejected: int = 0  # lines refused in this input
    quarantined: int = 0  # refused lines newly kept (a resent bad line is kept once)
    new_ids: list[str] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.received += other.received
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.quarantined += other.quarantined

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "batch_id": self.batch_id,
            "received": self.received,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "quarantined": self.quarantined,
        }


def records_frame(records: Sequence[CallRecord]) -> pl.DataFrame:
    """``CallRecord`` objects as a RECORD_SCHEMA frame (to be priced by the Ingestor)."""
    columns: dict[str, list[object]] = {name: [] for name in RECORD_SCHEMA}
    for r in records:
        values = (
            r.record_id, r.source, r.account, r.caller, r.callee, r.start, r.answer, r.end,
            r.duration, r.billsec, r.disposition.value, r.hangup_cause or None,
            r.channel or None, r.dst_channel or None, r.source_file or None, r.source_line,
        )  # fmt: skip
        for column, value in zip(columns.values(), values, strict=True):
            column.append(value)
    return pl.DataFrame(columns, schema=RECORD_SCHEMA)


class Ingestor:
    """Prices and stores batches of records durably; one per process and database."""

    def __init__(
        self,
        engine: Engine,
        policy: Policy | None = None,
        *,
        rates: str | None = None,
        fmt: str = "auto",
        assume_utc: bool = False,
        on_new: NewRecordsHook | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy or default_policy()
        self.fmt = fmt
        self.assume_utc = assume_utc
        self.on_new = on_new
        self.scanner = Scanner(
            self.policy, ScanOptions(fmt=fmt, rates=rates, assume_utc=assume_utc)
        )
        self._parsers: dict[tuple[str, str, str], LineParser] = {}
        self._lock = threading.Lock()  # rating pieces are shared; keep one batch at a time
        self._known_accounts: set[str] = set()

    # -- pricing -----------------------------------------------------------
    def rate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """RECORD_SCHEMA frame -> rated frame (numbering + rating columns)."""
        if frame.height == 0:
            return pl.DataFrame(schema={**RECORD_SCHEMA, **NUMBERING_SCHEMA, **RATING_SCHEMA})
        classified = self.scanner.classifier.classify_frame(frame, self.policy.dialing_context)
        return self.scanner.rater.rate_frame(classified)

    # -- the one transaction -------------------------------------------------
    def commit(
        self,
        source: str,
        records: pl.DataFrame,
        quarantined: Sequence[QuarantineEntry] = (),
        *,
        position: PositionWriter | None = None,
        rated: bool = False,
    ) -> IngestResult:
        """Price (unless ``rated``) and store ``records`` with ``quarantined`` lines and
        the source position, atomically. Returns counts; ``new_ids`` lists new records."""
        with self._lock:
            frame = records if rated else self.rate(records)
            batch_id = new_batch_id()
            now = utcnow()
            stored = to_stored(frame, self.policy, batch_id, now)
            with self.engine.begin() as conn:
                self._remember_accounts(conn, stored, now)
                new_ids = insert_rated(conn, stored)
                kept = insert_quarantined(conn, quarantined, batch_id, now)
                if position is not None:
                    position(conn)
                record_batch(
                    conn,
                    batch_id,
                    source,
                    now,
                    received=stored.height,
                    inserted=len(new_ids),
                    quarantined=kept,
                )
        result = IngestResult(
            source=source,
            batch_id=batch_id,
            received=stored.height,
            inserted=len(new_ids),
            duplicates=stored.height - len(new_ids),
            rejected=len(quarantined),
            quarantined=kept,
            new_ids=new_ids,
        )
        if self.on_new is not None and new_ids:
            fresh = frame.filter(pl.col("record_id").is_in(new_ids)).unique(
                "record_id", keep="first", maintain_order=True
            )
            self.on_new(fresh)
        return result

    def _remember_accounts(self, conn: Connection, stored: pl.DataFrame, now: object) -> None:
        names = set(stored.get_column("account").unique().to_list()) - self._known_accounts
        if not names:
            return
        stmt = dialect_insert(conn, accounts).on_conflict_do_nothing(index_elements=["account"])
        conn.execute(stmt, [{"account": n, "name": n, "created_at": now} for n in sorted(names)])
        self._known_accounts |= names

    # -- entry points for other sources -------------------------------------
    def ingest_frame(
        self,
        frame: pl.DataFrame,
        source: str = "api",
        quarantined: Sequence[QuarantineEntry] = (),
    ) -> IngestResult:
        """Store a RECORD_SCHEMA frame (priced here) or an already rated frame."""
        rated = "cost_e4" in frame.columns
        return self.commit(source, frame, quarantined, rated=rated)

    def store_new(
        self, records: Sequence[CallRecord], source: str = "api"
    ) -> tuple[IngestResult, list[CallRecord]]:
        """Price and store ``records``; return the counts and the records that were new
        (each id once, in input order). A resent record is a duplicate and not returned."""
        result = self.commit(source, records_frame(records))
        new = set(result.new_ids)
        fresh: list[CallRecord] = []
        for record in records:
            if record.record_id in new:
                new.discard(record.record_id)
                fresh.append(record)
        return result, fresh

    def parser_for(self, source: str, lines: Sequence[str], fmt: str | None = None) -> LineParser:
        fmt = fmt or self.fmt
        first = next((ln for ln in lines if ln.strip()), "")
        key = (source, fmt, "json" if first.lstrip().startswith("{") else "text")
        parser = self._parsers.get(key)
        if parser is None:
            ctx = self.policy.dialing_context()
            parser = LineParser.for_sample(
                [ln for ln in lines if ln.strip()],
                fmt,
                ctx,
                source_file=source,
                assume_utc=self.assume_utc,
            )
            if not parser.header_line:  # header-based bodies carry their own header
                self._parsers[key] = parser
        return parser

    def ingest_lines(
        self, source: str, lines: Sequence[str], fmt: str | None = None, first_line: int = 1
    ) -> IngestResult:
        """Parse CDR lines (one record per line; a header line first for header-based
        formats), price and store them. Lines that cannot be read are quarantined under
        ``source`` with their line number; a body whose format cannot be told is
        quarantined whole."""
        if not any(ln.strip() for ln in lines):
            return IngestResult(source=source)
        try:
            parser = self.parser_for(source, lines, fmt)
        except CdrFormatError as exc:
            bad = [
                QuarantineEntry(source, first_line + i, str(exc), ln, fmt or self.fmt)
                for i, ln in enumerate(lines)
                if ln.strip()
            ]
            return self.commit(source, pl.DataFrame(schema=RECORD_SCHEMA), bad)
        parsed = parser.parse_lines(list(lines), first_line)
        header = lines[parser.header_line - first_line] if parser.header_line else None
        entries = [QuarantineEntry.from_line(q, parsed.format, header) for q in parsed.quarantined]
        return self.commit(source, parsed.frame, entries)
