"""The normalized call record: one schema for every source format.

Bulk paths (scan, ingest) carry records as Polars frames with ``RECORD_SCHEMA``
columns; the per-record paths (detection engine, authorize, simulator) use
``CallRecord``. Times are always timezone-aware UTC inside tollguard; readers
convert from the source's local time using the dialing context's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import polars as pl


class Disposition(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CONGESTION = "congestion"


UTC_DATETIME = pl.Datetime("us", "UTC")

# Columns every reader produces, in this order.
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),  # stable: "<source>:<unique id>" or "<source>:h:<content hash>"
    "source": pl.String(),  # source name (format + origin), used to namespace ids
    "account": pl.String(),  # who pays: accountcode, trunk, PBX; "" when unknown
    "caller": pl.String(),  # A-number as written by the switch
    "callee": pl.String(),  # B-number as dialed
    "start": UTC_DATETIME,
    "answer": UTC_DATETIME,  # null when not answered
    "end": UTC_DATETIME,
    "duration": pl.Int64(),  # seconds, start to end
    "billsec": pl.Int64(),  # seconds, answer to end
    "disposition": pl.String(),  # a Disposition value
    "hangup_cause": pl.String(),  # as the switch wrote it (Q.850 name, SIP code, ANSWERED...)
    "channel": pl.String(),  # originating channel / trunk where known
    "dst_channel": pl.String(),  # terminating channel / trunk where known
    "source_file": pl.String(),
    "source_line": pl.Int64(),  # 1-based physical line (or row) in the file
}

# Columns added by numbering (normalize + classify).
NUMBERING_SCHEMA: dict[str, pl.DataType] = {
    "caller_e164": pl.String(),  # "+31201234567" or null when not a public number
    "callee_e164": pl.String(),
    "country": pl.String(),  # callee ISO alpha-2; "001" non-geographic; null unknown
    "number_type": pl.String(),  # a numbering.NumberType value
    "risk": pl.String(),  # id of the high-risk list entry that matched, or null
}

# Columns added by rating. Money is integer ten-thousandths ("e4") of the currency
# unit in frames and Decimal everywhere else; see rating/ for the rounding rule.
RATING_SCHEMA: dict[str, pl.DataType] = {
    "deck": pl.String(),  # rate deck name, null when unrated
    "deck_row": pl.Int64(),  # physical line of the row in the deck file (header is line 1)
    "prefix": pl.String(),  # matched prefix (digits, no "+")
    "destination": pl.String(),
    "rate_per_minute": pl.String(),  # decimal string as in the deck
    "billing": pl.String(),  # "60/60", "1/1", ...
    "charged_seconds": pl.Int64(),  # billsec rounded up to the increments
    "cost_e4": pl.Int64(),  # total cost in 1/10000 currency units, null when unrated
    "currency": pl.String(),
}

MONEY_QUANTUM = Decimal("0.0001")


def cost_from_e4(value: int) -> Decimal:
    """Integer ten-thousandths to an exact Decimal with four places."""
    return Decimal(value).scaleb(-4)  # same value and exponent as /10000 quantized, faster


def empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=RECORD_SCHEMA)


@dataclass(slots=True)
class CallRecord:
    """One call, normalized and (optionally) rated, for per-record processing."""

    record_id: str
    account: str
    caller: str
    callee: str
    start: datetime
    end: datetime
    duration: int
    billsec: int
    disposition: Disposition
    answer: datetime | None = None
    source: str = ""
    hangup_cause: str = ""
    channel: str = ""
    dst_channel: str = ""
    source_file: str = ""
    source_line: int = 0
    caller_e164: str | None = None
    callee_e164: str | None = None
    country: str | None = None
    number_type: str | None = None
    risk: str | None = None
    cost: Decimal | None = None  # None when unrated
    currency: str = "EUR"
    prefix: str | None = None
    deck: str | None = None
    deck_row: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.disposition is Disposition.ANSWERED
