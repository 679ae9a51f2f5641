"""Following a growing file: partial lines, restarts, rotation, duplicates, quarantine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from bench.cdrgen import write_asterisk, write_deck
from tollguard.ingest.core import Ingestor
from tollguard.ingest.retry import list_quarantined, retry_quarantined
from tollguard.ingest.tail import FileFollower
from tollguard.policy import default_policy
from tollguard.store.schema import rated_records


@pytest.fixture
def lines(tmp_path: Path) -> list[str]:
    src = write_asterisk(tmp_path / "gen.csv", 60, accounts=5)
    return src.read_text().splitlines(keepends=True)


@pytest.fixture
def ingestor(engine: Engine, tmp_path: Path) -> Ingestor:
    return Ingestor(engine, default_policy(), rates=str(write_deck(tmp_path / "deck.csv")))


def stored(engine: Engine) -> set[int]:
    """Source lines of stored records, by their uniqueid suffix (unique per generated line)."""
    with engine.connect() as conn:
        ids = conn.execute(select(rated_records.c.record_id)).scalars().all()
    return {int(i.rsplit(".", 1)[1]) for i in ids}


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(rated_records)).scalar_one())


def follow(ingestor: Ingestor, path: Path) -> FileFollower:
    follower = FileFollower(ingestor, path, batch_lines=7, rotate_grace=0)
    follower.run(once=True)
    return follower


def test_partial_last_line_waits_for_its_newline(
    ingestor: Ingestor, engine: Engine, lines: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "Master.csv"
    half = len(lines[10]) // 2
    path.write_text("".join(lines[:10]) + lines[10][:half])
    follow(ingestor, path)
    assert stored(engine) == set(range(10))
    with path.open("a") as fh:
        fh.write(lines[10][half:] + lines[11])
    follow(ingestor, path)
    assert stored(engine) == set(range(12))
    assert count(engine) == 12


def test_restart_resumes_after_the_last_committed_line(
    ingestor: Ingestor, engine: Engine, lines: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "Master.csv"
    path.write_text("".join(lines[:20]))
    first = follow(ingestor, path)
    assert first.stats.result.inserted == 20
    with path.open("a") as fh:
        fh.write("".join(lines[20:30]))
    second = follow(ingestor, path)  # a new process: position comes from the database
    assert second.stats.result.inserted == 10
    assert second.stats.result.duplicates == 0
    assert stored(engine) == set(range(30))


def test_rename_rotation_loses_and_repeats_nothing(
    ingestor: Ingestor, engine: Engine, lines: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "Master.csv"
    path.write_text("".join(lines[:20]))
    follow(ingestor, path)
    with path.open("a") as fh:  # written after our last read, before rotation
        fh.write("".join(lines[20:25]))
    os.rename(path, tmp_path / "Master.csv.1")
    path.write_text("".join(lines[25:40]))
    result = follow(ingestor, path)
    assert result.stats.result.duplicates == 0
    assert stored(engine) == set(range(40))
    with path.open("a") as fh:
        fh.write("".join(lines[40:45]))
    follow(ingestor, path)
    assert stored(engine) == set(range(45))
    assert count(engine) == 45


def test_copytruncate_rotation_loses_and_repeats_nothing(
    ingestor: Ingestor, engine: Engine, lines: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "Master.csv"
    path.write_text("".join(lines[:20]))
    follow(ingestor, path)
    with path.open("a") as fh:
        fh.write("".join(lines[20:25]))
    shutil.copyfile(path, tmp_path / "Master.csv.1")
    with path.open("r+") as fh:
        fh.truncate(0)
    with path.open("a") as fh:  # more new lines than the old offset: only the fingerprint tells
        fh.write("".join(lines[25:60]))
    result = follow(ingestor, path)
    assert result.stats.result.duplicates == 0
    assert stored(engine) == set(range(60))
    assert count(engine) == 60


def test_copytruncate_with_short_new_file(
    ingestor: Ingestor, engine: Engine, lines: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "Master.csv"
    path.write_text("".join(lines[:20]))
    follow(ingestor, path)
    shutil.copyfile(path, tmp_path / "Master.csv.1")
    path.write_text("".join(lines[20:23]))  # truncate + 3 new lines (smaller than the offset)
    follow(ingestor, path)
    assert stored(engine) == set(range(23))


def test_duplicate_resend_is_counted_not_stored(
    ingestor: Ingestor, engine: Engine, lines: list[str]
) -> None:
    body = [ln.rstrip("\n") for ln in lines[:15]]
    first = ingestor.ingest_lines("http", body, "asterisk-csv")
    again = ingestor.ingest_lines(
        "http", body[5:] + [ln.rstrip("\n") for ln in lines[15:20]], "asterisk-csv"
    )
    assert (first.inserted, first.duplicates) == (15, 0)
    assert (again.inserted, again.duplicates) == (5, 10)
    assert count(engine) == 20


def test_quarantine_list_and_retry(
    ingestor: Ingestor, engine: Engine, lines: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "Master.csv"
    good = lines[3]
    broken = good.replace('"ANSWERED"', '"ANSWERED","extra"').replace(
        '"NO ANSWER"', '"NO ANSWER","extra"'
    )
    path.write_text("".join(lines[:3]) + broken + "".join(lines[4:6]))
    follow(ingestor, path)
    follow(ingestor, path)  # nothing new, nothing quarantined twice
    open_rows = list_quarantined(engine)
    assert [(r.position, r.source) for r in open_rows] == [(4, str(path.absolute()))]
    assert stored(engine) == {0, 1, 2, 4, 5}
    still = retry_quarantined(ingestor, [open_rows[0].id])
    assert still.still_bad == 1
    fixed = retry_quarantined(ingestor, [open_rows[0].id], corrected=good.rstrip("\n"))
    assert fixed.reingested == 1
    assert stored(engine) == set(range(6))
    assert list_quarantined(engine) == []
    row = list_quarantined(engine, status="reingested")[0]
    assert row.attempts == 2 and row.record_id is not None and row.corrected_raw is not None
