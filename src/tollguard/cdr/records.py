"""Rated frames to ``CallRecord`` objects, in event order, for the per-record engine.

One record object per call is the largest fixed cost of detection on bulk input. The
columns are converted to Python lists in bulk (several times faster than row by row),
times as epoch seconds and money as integer ten-thousandths: the record makes its
datetimes and Decimal only when something reads them, which the engine rarely does.
Compiled with the engine (``tollguard.native``) the loop calls the record's constructor
directly; together these took the simulated month's records from 4.7 s to 1.65 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl

from tollguard.cdr.model import CallRecord, Disposition

RECORD_SLICE = 20_000  # rows converted to Python objects at a time

_DISPOSITIONS = {d.value: d for d in Disposition}


def records_from_frame(frame: pl.DataFrame) -> Iterator[CallRecord]:
    """Per-record view of a rated frame, in event order (call end, then record id)."""
    ordered = frame if in_event_order(frame) else frame.sort("end", "record_id")
    ordered = ordered.with_columns(
        pl.col("hangup_cause", "channel", "dst_channel").fill_null(""),
        pl.col("currency").fill_null("EUR"),
    )
    # in slices: a whole batch as Python lists would hold millions of objects at once
    for part in ordered.iter_slices(RECORD_SLICE):
        yield from _records(part)


def in_event_order(frame: pl.DataFrame) -> bool:
    """Is the frame already sorted by (end, record_id)? CDR files are written as calls
    end, so usually yes, and checking is far cheaper than sorting."""
    if frame.height < 2:
        return True
    end, rid = pl.col("end"), pl.col("record_id")
    step = (end > end.shift(1)) | ((end == end.shift(1)) & (rid >= rid.shift(1)))
    row = frame.select(
        nulls=end.null_count() + rid.null_count(), ordered=step.slice(1).fill_null(False).all()
    ).row(0)
    return bool(row[0] == 0 and row[1])


def _records(part: pl.DataFrame) -> Iterator[CallRecord]:
    col = part.get_column
    record_id: list[Any] = col("record_id").to_list()
    account: list[Any] = col("account").to_list()
    caller: list[Any] = col("caller").to_list()
    callee: list[Any] = col("callee").to_list()
    start = epoch_seconds(col("start"))
    end = epoch_seconds(col("end"))
    duration: list[Any] = col("duration").to_list()
    billsec: list[Any] = col("billsec").to_list()
    disposition = [_DISPOSITIONS[d] for d in col("disposition").to_list()]
    answer = epoch_seconds(col("answer"))
    source: list[Any] = col("source").to_list()
    hangup_cause: list[Any] = col("hangup_cause").to_list()
    channel: list[Any] = col("channel").to_list()
    dst_channel: list[Any] = col("dst_channel").to_list()
    source_file: list[Any] = col("source_file").to_list()
    source_line: list[Any] = col("source_line").to_list()
    caller_e164: list[Any] = col("caller_e164").to_list()
    callee_e164: list[Any] = col("callee_e164").to_list()
    country: list[Any] = col("country").to_list()
    number_type: list[Any] = col("number_type").to_list()
    risk: list[Any] = col("risk").to_list()
    cost_e4: list[Any] = col("cost_e4").to_list()
    currency: list[Any] = col("currency").to_list()
    prefix: list[Any] = col("prefix").to_list()
    deck: list[Any] = col("deck").to_list()
    deck_row: list[Any] = col("deck_row").to_list()
    for i in range(part.height):
        yield CallRecord(
            record_id[i], account[i], caller[i], callee[i], start[i], end[i], duration[i],
            billsec[i], disposition[i], answer[i], source[i], hangup_cause[i], channel[i],
            dst_channel[i], source_file[i], source_line[i], caller_e164[i], callee_e164[i],
            country[i], number_type[i], risk[i], None, currency[i], prefix[i], deck[i],
            deck_row[i], None, cost_e4[i],
        )  # fmt: skip


def epoch_seconds(series: pl.Series) -> list[Any]:
    """Epoch seconds (None for nulls) of a UTC Datetime column, the very floats
    ``datetime.timestamp()`` gives: whole microseconds divided once, correctly rounded.
    (Polars divides by multiplying with the reciprocal, which can be one bit off.)"""
    micros: list[int | None] = series.dt.epoch("us").to_list()
    return [None if us is None else us / 1_000_000 for us in micros]
