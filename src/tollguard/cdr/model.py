"""The normalized call record: one schema for every source format.

Bulk paths (scan, ingest) carry records as Polars frames with ``RECORD_SCHEMA``
columns; the per-record paths (detection engine, authorize, simulator) use
``CallRecord``. Times are always timezone-aware UTC inside tollguard; readers
convert from the source's local time using the dialing context's time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
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


def e4_from_cost(value: Decimal) -> int:
    """A Decimal amount as integer ten-thousandths (digits beyond four places dropped)."""
    return int(value * 10000)


def empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=RECORD_SCHEMA)


def _time(value: datetime | float) -> tuple[datetime | None, float]:
    """A time given either way: (the datetime when given, its epoch seconds)."""
    if isinstance(value, datetime):
        return value, value.timestamp()
    return None, value


class CallRecord:
    """One call, normalized and (optionally) rated, for per-record processing.

    Times are kept as epoch seconds (``start_ts``, ``end_ts``, ``answer_ts``) and money
    as integer ten-thousandths (``cost_e4``): that is what the engine computes with. The
    ``start``/``end``/``answer`` datetimes and the ``cost`` Decimal are made on first
    use, so the bulk path (``records_from_frame``) never builds the millions it would
    not read. Either form may be passed in: a datetime or epoch seconds (UTC) for a
    time, a Decimal ``cost`` or an integer ``cost_e4`` for money.
    """

    __slots__ = (
        "_answer",
        "_cost",
        "_end",
        "_start",
        "account",
        "answer_ts",
        "billsec",
        "callee",
        "callee_e164",
        "caller",
        "caller_e164",
        "channel",
        "cost_e4",
        "country",
        "currency",
        "deck",
        "deck_row",
        "disposition",
        "dst_channel",
        "duration",
        "end_ts",
        "extra",
        "hangup_cause",
        "number_type",
        "prefix",
        "record_id",
        "risk",
        "source",
        "source_file",
        "source_line",
        "start_ts",
    )

    def __init__(
        self,
        record_id: str,
        account: str,
        caller: str,
        callee: str,
        start: datetime | float,
        end: datetime | float,
        duration: int,
        billsec: int,
        disposition: Disposition,
        answer: datetime | float | None = None,
        source: str = "",
        hangup_cause: str = "",
        channel: str = "",
        dst_channel: str = "",
        source_file: str = "",
        source_line: int = 0,
        caller_e164: str | None = None,
        callee_e164: str | None = None,
        country: str | None = None,
        number_type: str | None = None,
        risk: str | None = None,
        cost: Decimal | None = None,  # None when unrated
        currency: str = "EUR",
        prefix: str | None = None,
        deck: str | None = None,
        deck_row: int | None = None,
        extra: dict[str, str] | None = None,
        cost_e4: int | None = None,  # the cost in ten-thousandths, when ``cost`` is not given
    ) -> None:
        self.record_id = record_id
        self.account = account
        self.caller = caller
        self.callee = callee
        self._start: datetime | None
        self._end: datetime | None
        self._answer: datetime | None
        self.start_ts: float
        self.end_ts: float
        self.answer_ts: float | None
        self._start, self.start_ts = _time(start)
        self._end, self.end_ts = _time(end)
        if answer is None:
            self._answer, self.answer_ts = None, None
        else:
            self._answer, self.answer_ts = _time(answer)
        self.duration = duration
        self.billsec = billsec
        self.disposition = disposition
        self.source = source
        self.hangup_cause = hangup_cause
        self.channel = channel
        self.dst_channel = dst_channel
        self.source_file = source_file
        self.source_line = source_line
        self.caller_e164 = caller_e164
        self.callee_e164 = callee_e164
        self.country = country
        self.number_type = number_type
        self.risk = risk
        self._cost: Decimal | None = cost
        self.cost_e4: int | None = cost_e4 if cost is None else e4_from_cost(cost)
        self.currency = currency
        self.prefix = prefix
        self.deck = deck
        self.deck_row = deck_row
        self.extra: dict[str, str] = {} if extra is None else extra

    @property
    def start(self) -> datetime:
        value = self._start
        if value is None:
            value = self._start = datetime.fromtimestamp(self.start_ts, UTC)
        return value

    @property
    def end(self) -> datetime:
        value = self._end
        if value is None:
            value = self._end = datetime.fromtimestamp(self.end_ts, UTC)
        return value

    @property
    def answer(self) -> datetime | None:
        value = self._answer
        if value is None and self.answer_ts is not None:
            value = self._answer = datetime.fromtimestamp(self.answer_ts, UTC)
        return value

    @property
    def cost(self) -> Decimal | None:
        value = self._cost
        if value is None and self.cost_e4 is not None:
            value = self._cost = cost_from_e4(self.cost_e4)
        return value

    @cost.setter
    def cost(self, value: Decimal | None) -> None:  # rating after the record was made
        self._cost = value
        self.cost_e4 = None if value is None else e4_from_cost(value)

    @property
    def answered(self) -> bool:
        return self.disposition is Disposition.ANSWERED

    def _values(self) -> tuple[object, ...]:
        return (
            self.record_id, self.account, self.caller, self.callee, self.start, self.end,
            self.duration, self.billsec, self.disposition, self.answer, self.source,
            self.hangup_cause, self.channel, self.dst_channel, self.source_file,
            self.source_line, self.caller_e164, self.callee_e164, self.country,
            self.number_type, self.risk, self.cost, self.currency, self.prefix, self.deck,
            self.deck_row, self.extra,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallRecord):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return (
            f"CallRecord(record_id={self.record_id!r}, account={self.account!r}, "
            f"callee={self.callee!r}, end={self.end.isoformat()}, cost={self.cost})"
        )
