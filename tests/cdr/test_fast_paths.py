"""The reader's shortcuts give exactly what the general way gives."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from cdr_testlib import read_all, row, utc, write
from polars.testing import assert_frame_equal, assert_series_equal

from tollguard.cdr.normalize import _localize, local_to_utc
from tollguard.policy import DialingContext

AMS = DialingContext(timezone="Europe/Amsterdam")


def exact(naive: pl.Series, tz: str) -> pl.Series:
    return naive.to_frame().select(_localize(pl.first(), tz, "earliest")).to_series()


@pytest.mark.parametrize(
    "tz",
    [
        "Europe/Amsterdam",
        "America/St_Johns",  # -03:30 / -02:30
        "Australia/Lord_Howe",  # DST of 30 minutes
        "Asia/Kathmandu",  # +05:45
        "America/Sao_Paulo",  # (former) DST changes at midnight
        "America/New_York",
        "UTC",
    ],
)
def test_offset_per_hour_equals_time_by_time(tz: str) -> None:
    start = datetime(2017, 1, 1)
    # Every 7 minutes 13 seconds for two years: every DST change, gap and overlap.
    times: list[datetime | None] = [
        start + timedelta(seconds=433 * i) for i in range(2 * 365 * 86400 // 433)
    ]
    times[5] = None
    naive = pl.Series("t", times, dtype=pl.Datetime("us"))
    assert_series_equal(local_to_utc(naive, tz), exact(naive, tz))
    assert local_to_utc(naive, tz).name == "t"


def test_offset_lookup_falls_back_when_times_are_spread_or_missing() -> None:
    tz = "Europe/Amsterdam"
    spread = pl.Series(
        "t", [datetime(1970, 1, 1), datetime(2026, 10, 25, 2, 30), None], dtype=pl.Datetime("us")
    )
    assert_series_equal(local_to_utc(spread, tz), exact(spread, tz))
    missing = pl.Series("t", [None, None], dtype=pl.Datetime("us"))
    assert_series_equal(local_to_utc(missing, tz), exact(missing, tz))
    empty = pl.Series("t", [], dtype=pl.Datetime("us"))
    assert_series_equal(local_to_utc(empty, tz), exact(empty, tz))


def ast(uid: str, **over: str) -> str:
    f = {
        "account": '"acc1"',
        "start": '"2024-02-01 10:00:00"',
        "answer": '"2024-02-01 10:00:02"',
        "end": '"2024-02-01 10:00:32"',
        "duration": "32",
        "billsec": "30",
        "disposition": '"ANSWERED"',
        "userfield": '""',
        **over,
    }
    return (
        f'{f["account"]},"100","0201234567","ctx","""A"" <100>","SIP/100-1","SIP/gw-2",'
        f'"Dial","x,y",{f["start"]},{f["answer"]},{f["end"]},{f["duration"]},{f["billsec"]},'
        f'{f["disposition"]},"DOCUMENTATION","{uid}",{f["userfield"]}'
    )


def both_paths(path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> pl.DataFrame:
    """Read ``path`` the fast way and line by line; they must agree."""
    import tollguard.cdr.read as read_module

    fast: pl.DataFrame
    fast, fast_q, _ = read_all(path, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(read_module, "split_block", lambda *a: None)
        slow, slow_q, _ = read_all(path, **kwargs)
    assert_frame_equal(fast, slow)
    assert fast_q == slow_q
    return fast


def test_unquoted_empty_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [
        ast("1.1", account="", userfield=""),
        ast("1.2", answer="", billsec="0", disposition='"NO ANSWER"', userfield=""),
        ast("1.3"),
    ]
    frame = both_paths(write(tmp_path / "m.csv", lines), monkeypatch, ctx=AMS)
    assert frame.get_column("account").to_list() == ["", "acc1", "acc1"]
    assert row(frame, 2)["answer"] is None


def test_values_that_need_the_general_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        ast("2.1", start='" 2024-02-01 10:00:00 "', billsec='" 30"'),
        ast("2.2", duration='"32.5"', billsec="30.2"),
        ast("2.3", answer='"0"', billsec="0", disposition='"NO ANSWER"'),
        ast("2.4", end='"   "'),
        ast("2.5", start='"2024-02-30 10:00:00"'),
        ast("2.6"),
    ]
    path = write(tmp_path / "m.csv", lines)
    frame = both_paths(path, monkeypatch, ctx=AMS)
    # One line per batch: the ordinary lines are read the quick way, the others the
    # general way; in one batch, every column with an odd value is read the general way.
    single, single_q, _ = read_all(path, ctx=AMS, batch_rows=1)
    assert_frame_equal(single, frame)
    assert single_q == read_all(path, ctx=AMS)[1]
    assert row(frame, 1)["start"] == utc("2024-02-01 09:00:00")
    assert row(frame, 1)["billsec"] == 30
    assert (row(frame, 2)["duration"], row(frame, 2)["billsec"]) == (33, 31)
    assert row(frame, 3)["answer"] is None
    assert row(frame, 4)["end"] == utc("2024-02-01 09:00:32")  # start + duration
    assert frame.get_column("source_line").to_list() == [1, 2, 3, 4, 6]


def test_prefetch_keeps_order_errors_and_stops_early() -> None:
    import threading
    from collections.abc import Generator, Iterator

    from tollguard.cdr.blocks import prefetch

    closed: list[bool] = []

    def items(fail: bool) -> Iterator[int]:
        try:
            yield from range(5)
            if fail:
                raise EOFError("cut short")
        finally:
            closed.append(True)

    assert list(prefetch(items(False))) == [0, 1, 2, 3, 4]
    got: list[int] = []
    with pytest.raises(EOFError, match="cut short"):
        for item in prefetch(items(True)):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    early = prefetch(items(False))
    assert next(early) == 0
    assert isinstance(early, Generator)  # prefetch is a generator function
    early.close()  # the worker is told to stop and the source is closed
    assert closed == [True, True, True]
    assert not [t for t in threading.enumerate() if t.name == "tollguard-prefetch"]


def test_blocks_of_many_pieces_read_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tollguard.cdr import blocks as block_reader

    lines = [ast(f"3.{i}") for i in range(400)]
    lines[0] = "\ufeff" + lines[0]  # a BOM before the first line
    lines[7] = ast("3.7", start='"2024-02-30 10:00:00"')  # quarantined
    lines[100] = ""  # blank
    lines[150] = ast("3.150", userfield='"' + "u" * 5000 + '"')  # longer than a read
    lines[222] = lines[222].rsplit(",", 2)[0]  # too few fields
    path = tmp_path / "m.csv"
    path.write_bytes("\n".join(lines).encode())  # no newline at the end
    whole, whole_q, _ = read_all(path, ctx=AMS, batch_rows=1000)
    monkeypatch.setattr(block_reader, "READ_SIZE", 1000)  # many pieces per block
    for batch_rows in (1000, 64, 7):
        frame, quarantined, batches = read_all(path, ctx=AMS, batch_rows=batch_rows)
        assert_frame_equal(frame, whole)
        assert quarantined == whole_q
        assert sum(b.lines_read for b in batches) == 400
    assert [q.line for q in whole_q] == [8, 223]
    assert whole.height == 400 - 3
    assert row(whole, 1)["record_id"] == "asterisk-csv:3.0"
    assert row(whole, 400)["record_id"] == "asterisk-csv:3.399"
