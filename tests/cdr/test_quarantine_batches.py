"""Bad lines are quarantined with file, line and reason; batching keeps lines and dedup right."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from cdr_testlib import read_all, write
from polars.testing import assert_frame_equal

from tollguard.cdr.dedup import Deduplicator


def line(uid: str, seq: int = 0, **over: str) -> str:
    f = {
        "start": "2024-02-01 10:00:00",
        "answer": "2024-02-01 10:00:02",
        "end": "2024-02-01 10:00:32",
        "duration": "32",
        "billsec": "30",
        "disposition": "ANSWERED",
        **over,
    }
    return (
        f'"acc1","100","0025261234","ctx","""A"" <100>","SIP/100-1","SIP/gw-2","Dial","x",'
        f'"{f["start"]}","{f["answer"]}","{f["end"]}",{f["duration"]},{f["billsec"]},'
        f'"{f["disposition"]}","DOCUMENTATION","{uid}","","","{uid}",{seq}'
    )


MIXED = [
    line("1.1"),  # 1 good
    line("1.2").rsplit(",", 3)[0],  # 2 too few fields
    "",  # 3 blank
    line("1.3", start="2024-02-31 10:00:00"),  # 4 impossible date
    line("1.4", duration="-5"),  # 5 negative duration
    line("1.5", end="2024-02-01 09:59:00"),  # 6 end before start
    line("1.6", billsec="ten"),  # 7 billsec not a number
    line("1.7").replace('"Dial"', '"Di"al"'),  # 8 stray quote
    line("1.8"),  # 9 good
    line("1.9", start=""),  # 10 no start
    line("1.10", answer="2024-02-01 09:00:00"),  # 11 answer before start
    line("1.11") + ',"extra"',  # 12 too many fields
    line("1.12"),  # 13 good
]


def test_mixed_good_and_bad_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "Master.csv", MIXED)
    frame, quarantined, batches = read_all(path)
    assert frame.get_column("source_line").to_list() == [1, 9, 13]
    assert frame.get_column("record_id").to_list() == [
        "asterisk-csv:1.1/0",
        "asterisk-csv:1.8/0",
        "asterisk-csv:1.12/0",
    ]
    got = {q.line: q.reason for q in quarantined}
    assert sorted(got) == [2, 4, 5, 6, 7, 8, 10, 11, 12]
    assert got[2] == "expected 21 fields (asterisk-csv layout), found 18"
    assert got[4] == "start time '2024-02-31 10:00:00' is not a date/time I can read"
    assert got[5] == "negative duration -5"
    assert got[6] == "end 2024-02-01 09:59:00 is before start 2024-02-01 10:00:00"
    assert got[7] == "billsec 'ten' is not a number of seconds"
    assert got[8] == "unbalanced quotes"
    assert got[10] == "no start time"
    assert got[11] == "answer 2024-02-01 09:00:00 is before start 2024-02-01 10:00:00"
    assert got[12] == "expected 21 fields (asterisk-csv layout), found 22"
    for q in quarantined:
        assert q.source_file == str(path)
        assert q.raw == MIXED[q.line - 1]
    # Nothing lost: every non-blank line is a record or a quarantined line.
    assert frame.height + len(quarantined) == len([x for x in MIXED if x])
    assert sum(b.lines_read for b in batches) == len(MIXED)


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 5, 1000])
def test_batches_keep_line_numbers_and_quarantine(tmp_path: Path, batch_rows: int) -> None:
    path = write(tmp_path / "Master.csv", MIXED)
    whole, whole_q, _ = read_all(path, batch_rows=1000)
    frame, quarantined, batches = read_all(path, batch_rows=batch_rows)
    assert_frame_equal(frame, whole)
    assert quarantined == whole_q
    assert [b.lines_read for b in batches][:-1] == [batch_rows] * (len(batches) - 1)
    assert sum(b.lines_read for b in batches) == len(MIXED)
    assert all(b.frame.height <= batch_rows for b in batches)


def test_dedup_across_batch_boundaries(tmp_path: Path) -> None:
    # 1.1 repeats in a later batch, 1.2 repeats inside one batch.
    lines = [line("1.1"), line("1.2"), line("1.2"), line("1.3"), line("1.1"), line("1.4")]
    path = write(tmp_path / "Master.csv", lines)
    dedup = Deduplicator()
    kept: list[int] = []
    dropped = 0
    for batch in read_all(path, batch_rows=2)[2]:
        frame, n = dedup.filter(batch.frame)
        kept += frame.get_column("source_line").to_list()
        dropped += n
    assert kept == [1, 2, 4, 6]
    assert dropped == 2
    assert len(dedup) == 4


def test_gzip_in_batches(tmp_path: Path) -> None:
    packed = tmp_path / "Master.csv.1.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as f:
        f.write("\n".join(MIXED) + "\n")
    frame, quarantined, _ = read_all(packed, batch_rows=4)
    assert frame.get_column("source_line").to_list() == [1, 9, 13]
    assert len(quarantined) == 9


def test_truncated_gzip_is_reported_not_crashed(tmp_path: Path) -> None:
    body = ("\n".join(line(f"1.{i}") for i in range(2000)) + "\n").encode()
    packed = gzip.compress(body)
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    frame, quarantined, _ = read_all(path, batch_rows=100)
    assert quarantined, "a truncated file must leave a trace"
    assert "cannot be read past this point" in quarantined[-1].reason
    lines = frame.get_column("source_line").to_list()
    assert lines == list(range(1, len(lines) + 1))


def test_large_file_many_batches(tmp_path: Path) -> None:
    n = 20_000
    lines = [line(f"9.{i}", i % 3) for i in range(n)]
    lines[12_345] = "garbage"
    path = write(tmp_path / "big.csv", lines)
    frame, quarantined, batches = read_all(path, batch_rows=3000)
    assert len(batches) == 7
    assert frame.height == n - 1
    assert [(q.line, q.raw) for q in quarantined] == [(12_346, "garbage")]
    lines_out = frame.get_column("source_line").to_numpy()
    assert np.array_equal(lines_out, np.delete(np.arange(1, n + 1), 12_345))
    assert frame.get_column("record_id").n_unique() == n - 1
    assert frame.filter(pl.col("source_line") == 20_000).get_column("record_id").item() == (
        "asterisk-csv:9.19999/1"
    )


@pytest.mark.parametrize("batch_rows", [1, 7, 64, 100_000])
def test_block_reader_splits_exactly_at_line_ends(tmp_path: Path, batch_rows: int) -> None:
    from tollguard.cdr import blocks as block_reader

    lines = [f"line-{i}," + "x" * (i % 37) for i in range(3000)]
    path = tmp_path / "raw.txt"
    path.write_bytes(("\n".join(lines)).encode())  # no newline after the last line
    old = block_reader.READ_SIZE
    block_reader.READ_SIZE = 1000  # many reads per block, lines cut across reads
    try:
        blocks = list(block_reader.iter_blocks(path, batch_rows))
    finally:
        block_reader.READ_SIZE = old
    assert b"".join(b.data for b in blocks).decode().splitlines() == lines
    assert [b.first_line for b in blocks] == [1 + i * batch_rows for i in range(len(blocks))]
    assert all(b.data.endswith(b"\n") and b.data.count(b"\n") == b.lines for b in blocks)
    assert all(b.lines == batch_rows for b in blocks[:-1])


def test_fast_and_line_by_line_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tollguard.cdr.read as read_module
    from tollguard.cdr.csvread import split_block as real

    lines = [
        line(f"5.{i}", i % 4, disposition="BUSY" if i % 5 == 0 else "ANSWERED") for i in range(50)
    ]
    lines[10] = ""
    lines[20] = line("5.20", 2, answer="")
    path = tmp_path / "m.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    used: list[bool] = []

    def spy(*args: Any) -> Any:
        result = real(*args)
        used.append(result is not None)
        return result

    monkeypatch.setattr(read_module, "split_block", spy)
    fast, fast_q, _ = read_all(path, batch_rows=16)
    assert used == [True] * 4  # blank line and CRLF do not force the slow path
    monkeypatch.setattr(read_module, "split_block", lambda *a: None)
    slow, slow_q, _ = read_all(path, batch_rows=16)
    assert fast.height == 49
    assert_frame_equal(fast, slow)
    assert fast_q == slow_q == []


@pytest.mark.parametrize("cut", [1, 3])
def test_single_short_line_in_an_otherwise_clean_file(tmp_path: Path, cut: int) -> None:
    lines = [line(f"6.{i}", i) for i in range(30)]
    lines[17] = lines[17].rsplit(",", cut)[0]
    frame, quarantined, _ = read_all(write(tmp_path / "m.csv", lines))
    assert frame.height == 29
    assert [(q.line, q.reason) for q in quarantined] == [
        (18, f"expected 21 fields (asterisk-csv layout), found {21 - cut}")
    ]
