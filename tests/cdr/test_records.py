"""Rated frames to CallRecords: event order (call end, then record id) whether or not
the frame arrives sorted, exact money and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl

from tests.store.test_store import rated_frame
from tollguard.cdr.model import Disposition
from tollguard.cdr.records import RECORD_SLICE, in_event_order, records_from_frame

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _ids(frame: pl.DataFrame) -> list[str]:
    return [r.record_id for r in records_from_frame(frame)]


def test_a_sorted_frame_is_recognised_and_kept_as_it_is() -> None:
    frame = rated_frame(5, T0)
    assert in_event_order(frame)
    assert _ids(frame) == [f"r:{i}" for i in range(5)]


def test_an_unsorted_frame_comes_out_in_event_order() -> None:
    frame = rated_frame(5, T0)
    shuffled = frame[[3, 0, 4, 1, 2]]
    assert not in_event_order(shuffled)
    assert _ids(shuffled) == [f"r:{i}" for i in range(5)]


def test_equal_end_times_are_ordered_by_record_id() -> None:
    frame = rated_frame(3, T0).with_columns(pl.lit(T0).dt.replace_time_zone("UTC").alias("end"))
    backwards = frame[[2, 1, 0]]
    assert not in_event_order(backwards)
    assert in_event_order(frame)
    assert _ids(backwards) == ["r:0", "r:1", "r:2"]


def test_a_missing_end_time_is_never_taken_for_sorted() -> None:
    frame = rated_frame(3, T0).with_columns(
        pl.when(pl.col("record_id") == "r:1").then(None).otherwise(pl.col("end")).alias("end")
    )
    assert not in_event_order(frame)


def test_records_carry_exact_money_and_utc_times_across_slices() -> None:
    n = RECORD_SLICE + 3  # more than one slice
    records = list(records_from_frame(rated_frame(n, T0)))
    assert len(records) == n
    last = records[-1]
    assert last.record_id == f"r:{n - 1}"
    assert last.cost == Decimal(90 + n - 1).scaleb(-4)
    assert last.start == T0 + timedelta(minutes=n - 1)
    assert last.end == last.start + timedelta(seconds=65)
    assert last.end.tzinfo is not None and last.end.utcoffset() == timedelta(0)
    assert last.disposition is Disposition.ANSWERED
    assert last.source_line == n


def test_sub_second_times_survive_exactly_and_match_datetime_timestamp() -> None:
    # microseconds that are not exact in binary: the epoch seconds must be the very float
    # datetime.timestamp() gives, and the datetime made from them the very same instant
    odd = [
        T0 + timedelta(microseconds=us) for us in (1, 3, 7, 123_457, 333_333, 999_999)
    ]  # in event order
    frame = rated_frame(len(odd), T0).with_columns(
        pl.Series("start", odd, dtype=pl.Datetime("us", "UTC")),
        pl.Series("end", [t + timedelta(seconds=61) for t in odd], dtype=pl.Datetime("us", "UTC")),
    )
    for record, when in zip(records_from_frame(frame), odd, strict=True):
        assert record.start_ts == when.timestamp()
        assert record.start == when
        assert record.end == when + timedelta(seconds=61)


def test_an_unanswered_or_unrated_call_has_no_answer_time_and_no_cost() -> None:
    frame = rated_frame(2, T0).with_columns(
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("answer"),
        pl.lit(None, dtype=pl.Int64).alias("cost_e4"),
    )
    for record in records_from_frame(frame):
        assert record.answer is None and record.answer_ts is None
        assert record.cost is None and record.cost_e4 is None
