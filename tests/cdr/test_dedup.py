"""Deduplicator: first occurrence wins, across frames, with 8 bytes per remembered id."""

from __future__ import annotations

import math

import polars as pl
import pytest

from tollguard.cdr.dedup import Deduplicator


def frame(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"record_id": ids, "n": list(range(len(ids)))})


def test_repeats_inside_one_frame_keep_the_first() -> None:
    out, dropped = Deduplicator().filter(frame(["a", "b", "a", "c", "b"]))
    assert out.get_column("n").to_list() == [0, 1, 3]
    assert dropped == 2


def test_ids_seen_in_earlier_frames_are_dropped() -> None:
    dedup = Deduplicator()
    assert dedup.filter(frame(["a", "b"]))[1] == 0
    out, dropped = dedup.filter(frame(["b", "c", "a", "d", "c"]))
    assert out.get_column("record_id").to_list() == ["c", "d"]
    assert dropped == 3
    assert len(dedup) == 4
    empty, none = dedup.filter(frame([]))
    assert (empty.height, none) == (0, 0)


def test_many_batches_merge_runs_and_use_8_bytes_per_id() -> None:
    dedup = Deduplicator()
    total = 0
    for batch in range(200):
        ids = [f"x:{batch * 500 + i}" for i in range(500)]
        ids += [f"x:{i}" for i in range(0, batch * 500, 997)]  # old ids come back
        out, dropped = dedup.filter(frame(ids))
        assert out.height == 500
        assert dropped == len(ids) - 500
        total += 500
    assert len(dedup) == total
    assert dedup.nbytes == 8 * total
    assert dedup.runs <= math.ceil(math.log2(total / 500)) + 1


def test_null_ids_are_an_error() -> None:
    with pytest.raises(ValueError, match="without record_id"):
        Deduplicator().filter(pl.DataFrame({"record_id": ["a", None]}))
