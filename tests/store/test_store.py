"""Schema, idempotent writes, counters and retention, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
from sqlalchemy import Engine, func, inspect, select

from tollguard.cdr.model import NUMBERING_SCHEMA, RATING_SCHEMA, RECORD_SCHEMA
from tollguard.policy import parse_policy
from tollguard.store.counters import daily_counters, purge_older_than
from tollguard.store.migrate import CORE_REVISION, current_revisions
from tollguard.store.positions import Position, load_position, save_position
from tollguard.store.records import (
    QuarantineEntry,
    insert_quarantined,
    insert_rated,
    new_batch_id,
    to_stored,
)
from tollguard.store.schema import CORE_TABLES, rated_records


def rated_frame(n: int, start: datetime, account: str = "acme", prefix: str = "r") -> pl.DataFrame:
    rows = []
    for i in range(n):
        s = start + timedelta(minutes=i)
        rows.append(
            {
                "record_id": f"{prefix}:{i}", "source": "test", "account": account,
                "caller": "2001", "callee": "0201234567", "start": s,
                "answer": s + timedelta(seconds=5), "end": s + timedelta(seconds=65),
                "duration": 65, "billsec": 60, "disposition": "answered",
                "hangup_cause": "ANSWERED", "channel": "SIP/a", "dst_channel": "SIP/b",
                "source_file": "f.csv", "source_line": i + 1, "caller_e164": None,
                "callee_e164": "+31201234567", "country": "NL", "number_type": "FIXED_LINE",
                "risk": None, "deck": "d", "deck_row": 2, "prefix": "3120",
                "destination": "Amsterdam", "rate_per_minute": "0.0090", "billing": "60/60",
                "charged_seconds": 60, "cost_e4": 90 + i, "currency": "EUR",
            }
        )  # fmt: skip
    schema = {**RECORD_SCHEMA, **NUMBERING_SCHEMA, **RATING_SCHEMA}
    return pl.DataFrame(rows, schema=schema)


def store(engine: Engine, frame: pl.DataFrame, policy=None) -> list[str]:  # type: ignore[no-untyped-def]
    stored = to_stored(frame, policy, new_batch_id(), datetime.now(UTC))
    with engine.begin() as conn:
        return insert_rated(conn, stored)


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(rated_records)).scalar_one())


def test_upgrade_creates_core_tables(engine: Engine) -> None:
    assert current_revisions(engine)  # at head: 0001_core or a revision built on it
    assert CORE_REVISION
    names = set(inspect(engine).get_table_names())
    assert {t.name for t in CORE_TABLES} <= names


def test_same_records_twice_change_nothing(engine: Engine) -> None:
    frame = rated_frame(50, datetime(2026, 10, 1, 8, tzinfo=UTC))
    assert len(store(engine, frame)) == 50
    assert store(engine, frame) == []
    # a batch mixing new and already stored records, with a repeat inside the batch
    more = pl.concat(
        [frame.head(10), rated_frame(60, datetime(2026, 10, 1, 8, tzinfo=UTC)).tail(10)]
    )
    more = pl.concat([more, more.tail(1)])
    new = store(engine, more)
    assert sorted(new) == sorted(f"r:{i}" for i in range(50, 60))
    assert count(engine) == 60


def test_values_round_trip_exactly(engine: Engine) -> None:
    start = datetime(2026, 10, 1, 23, 59, 59, 123456, tzinfo=UTC)
    store(engine, rated_frame(1, start))
    with engine.connect() as conn:
        row = conn.execute(select(rated_records)).one()._mapping
    assert row["cost_e4"] == 90
    got = row["start"] if row["start"].tzinfo else row["start"].replace(tzinfo=UTC)
    assert got == start
    assert row["local_day"] == date(2026, 10, 1)
    assert row["rate_per_minute"] == "0.0090"


def test_daily_counters_use_the_account_time_zone(engine: Engine) -> None:
    policy = parse_policy({"accounts": {"ams": {"timezone": "Europe/Amsterdam"}}})
    late = datetime(2026, 10, 1, 22, 30, tzinfo=UTC)  # 00:30 on 2 Oct in Amsterdam
    store(engine, rated_frame(3, late, account="ams", prefix="a"), policy)
    store(engine, rated_frame(3, late, account="utc", prefix="u"), policy)
    got = {(c.account, c.day): (c.calls, c.cost_e4) for c in daily_counters(engine)}
    assert got == {("ams", date(2026, 10, 2)): (3, 273), ("utc", date(2026, 10, 1)): (3, 273)}


def test_purge_keeps_daily_counters_as_snapshots(engine: Engine) -> None:
    old = datetime(2026, 1, 10, 9, tzinfo=UTC)
    recent = datetime(2026, 3, 1, 9, tzinfo=UTC)
    store(engine, rated_frame(5, old, prefix="o"))
    store(engine, rated_frame(7, recent, prefix="n"))
    before = daily_counters(engine)
    result = purge_older_than(engine, 30, today=date(2026, 3, 5))
    assert result.records_deleted == 5
    assert count(engine) == 7
    assert daily_counters(engine) == before
    # a late record for the purged day adds to the snapshot on the next purge
    store(engine, rated_frame(1, old + timedelta(hours=1), prefix="late"))
    purge_older_than(engine, 30, today=date(2026, 3, 5))
    jan = [c for c in daily_counters(engine) if c.day == date(2026, 1, 10)]
    assert jan[0].calls == 6


def test_quarantined_line_is_kept_once(engine: Engine) -> None:
    entry = QuarantineEntry("Master.csv", 7, "expected 18 fields", "garbage,line", "asterisk-csv")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        assert insert_quarantined(conn, [entry], new_batch_id(), now) == 1
    with engine.begin() as conn:
        assert insert_quarantined(conn, [entry, entry], new_batch_id(), now) == 0


def test_positions_round_trip(engine: Engine) -> None:
    pos = Position("/var/log/Master.csv", 2049, 123456, 1000, 10, "ab" * 32, 1000, "asterisk-csv")
    with engine.begin() as conn:
        save_position(conn, pos)
    with engine.begin() as conn:
        save_position(conn, Position(**{**vars(pos), "offset": 2000, "line": 20}))
    with engine.connect() as conn:
        got = load_position(conn, pos.path)
    assert got is not None and (got.offset, got.line, got.inode) == (2000, 20, 123456)
