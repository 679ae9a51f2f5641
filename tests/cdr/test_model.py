"""CallRecord keeps times as epoch seconds and money as integer ten-thousandths, and
makes the datetimes and the Decimal on first use: both forms must say the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from tollguard.cdr.model import CallRecord, Disposition

START = datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC)  # around a DST change
END = START + timedelta(seconds=75, microseconds=2)


def _record(start: datetime | float, end: datetime | float, **kw: object) -> CallRecord:
    return CallRecord("r:1", "acct", "100", "0031201234567", start, end, 75, 70,
                      Disposition.ANSWERED, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_record_made_from_epoch_seconds_equals_one_made_from_datetimes() -> None:
    from_datetimes = _record(START, END, cost=Decimal("1.2345"))
    from_epoch = _record(START.timestamp(), END.timestamp(), cost_e4=12345)
    assert from_epoch == from_datetimes
    assert from_epoch.start == START and from_epoch.end == END
    assert from_epoch.start.tzinfo is UTC
    assert from_epoch.cost == Decimal("1.2345") and str(from_epoch.cost) == "1.2345"
    assert from_datetimes.end_ts == END.timestamp() and from_datetimes.cost_e4 == 12345


def test_a_datetime_given_is_kept_as_given() -> None:
    amsterdam = timezone(timedelta(hours=1))
    local = START.astimezone(amsterdam)
    record = _record(local, END)
    assert record.start is local  # not converted: its offset is what the caller chose
    assert record.start_ts == START.timestamp()


def test_cost_set_after_rating_updates_the_integer_cost() -> None:
    record = _record(START, END)
    assert record.cost is None and record.cost_e4 is None
    record.cost = Decimal("0.0450")
    assert record.cost_e4 == 450 and record.cost == Decimal("0.0450")
    record.cost = None
    assert record.cost_e4 is None and record.cost is None


def test_records_differ_when_a_field_differs() -> None:
    a = _record(START, END, cost_e4=1)
    assert a != _record(START, END, cost_e4=2)
    assert a != _record(START, END + timedelta(microseconds=1), cost_e4=1)
    assert a.answered and "r:1" in repr(a)
