"""What the dashboard reads from the store: sums per account and day, traffic windows,
ingestion status, alerts. Aggregation runs in SQL where it can (one GROUP BY over an
indexed range), so the overview stays fast with months of records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Engine, func, inspect, select

from tollguard.store.schema import ingest_batches, quarantined_lines, rated_records

NORMAL_WEEKS = 4


def has_records(engine: Engine | None) -> bool:
    return engine is not None and inspect(engine).has_table("rated_records")


def aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def db_time(engine: Engine, at: datetime) -> datetime:
    utc = at.astimezone(UTC)
    return utc.replace(tzinfo=None) if engine.dialect.name == "sqlite" else utc


def latest_start(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        return aware(conn.execute(select(func.max(rated_records.c.start))).scalar())


def first_start(engine: Engine, account: str) -> datetime | None:
    t = rated_records
    with engine.connect() as conn:
        return aware(
            conn.execute(select(func.min(t.c.start)).where(t.c.account == account)).scalar()
        )


def known_accounts(engine: Engine | None) -> list[str]:
    if not has_records(engine):
        return []
    assert engine is not None
    from tollguard.store.schema import accounts

    with engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(select(accounts.c.account))]


@dataclass
class DaySums:
    calls: int = 0
    billsec: int = 0
    cost_e4: int = 0


def day_sums(
    engine: Engine, first: date, last: date, accounts: Iterable[str] | None = None
) -> dict[tuple[str, date], DaySums]:
    """Calls, billable seconds and cost per account and local day (the store's
    ``local_day``, in the account's time zone) for days in [first, last]."""
    t = rated_records
    query = (
        select(
            t.c.account, t.c.local_day, func.count(), func.sum(t.c.billsec), func.sum(t.c.cost_e4)
        )
        .where(t.c.local_day >= first)
        .where(t.c.local_day <= last)
        .group_by(t.c.account, t.c.local_day)
    )
    if accounts is not None:
        query = query.where(t.c.account.in_(list(accounts)))
    out: dict[tuple[str, date], DaySums] = {}
    with engine.connect() as conn:
        for acc, day, calls, secs, cost in conn.execute(query):
            if isinstance(day, str):
                day = date.fromisoformat(day)
            out[(str(acc), day)] = DaySums(int(calls), int(secs or 0), int(cost or 0))
    return out


@dataclass
class Window:
    calls: int = 0
    cost_e4: int = 0


def window_sums(engine: Engine, since: datetime, until: datetime) -> dict[str, Window]:
    t = rated_records
    query = (
        select(t.c.account, func.count(), func.sum(t.c.cost_e4))
        .where(t.c.start >= db_time(engine, since))
        .where(t.c.start < db_time(engine, until))
        .group_by(t.c.account)
    )
    with engine.connect() as conn:
        return {str(a): Window(int(n), int(c or 0)) for a, n, c in conn.execute(query)}


@dataclass
class NowVsNormal:
    now: Window
    normal_calls: float | None  # mean over the covered previous weeks
    normal_cost_e4: float | None
    weeks: int


def traffic_now(
    engine: Engine, as_of: datetime, tz: str, accounts: list[str], hours: int = 1
) -> dict[str, NowVsNormal]:
    """Calls and cost in the last ``hours`` up to ``as_of`` against the same local
    hours of the previous four weeks (mean over the weeks the account's records cover)."""
    zone = ZoneInfo(tz)
    local = as_of.astimezone(zone)
    now = window_sums(engine, as_of - timedelta(hours=hours), as_of)
    past: list[tuple[datetime, dict[str, Window]]] = []
    for k in range(1, NORMAL_WEEKS + 1):
        end = (local - timedelta(days=7 * k)).astimezone(UTC)  # same wall-clock time
        past.append((end, window_sums(engine, end - timedelta(hours=hours), end)))
    firsts = first_days(engine)
    out: dict[str, NowVsNormal] = {}
    for acc in accounts:
        first = firsts.get(acc)
        covered = [
            w
            for end, w in past
            if first is not None and (end - timedelta(hours=hours)).astimezone(zone).date() > first
        ]
        n = len(covered)
        calls = sum(w.get(acc, Window()).calls for w in covered)
        cost = sum(w.get(acc, Window()).cost_e4 for w in covered)
        out[acc] = NowVsNormal(
            now.get(acc, Window()), calls / n if n else None, cost / n if n else None, n
        )
    return out


def first_days(engine: Engine) -> dict[str, date]:
    """Each account's first local day with records (reads the (account, local_day) index)."""
    t = rated_records
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.c.account, func.min(t.c.local_day)).group_by(t.c.account)
        ).all()
    return {str(a): date.fromisoformat(v) if isinstance(v, str) else v for a, v in rows if v}


@dataclass
class SourceStatus:
    source: str
    last_record_end: datetime | None
    records: int
    last_commit: datetime | None = None
    batches: int = 0
    quarantined_open: int = 0


@dataclass
class IngestStatus:
    sources: list[SourceStatus] = field(default_factory=list)  # record sources (formats)
    feeds: list[SourceStatus] = field(default_factory=list)  # ingest feeds (files, streams)
    quarantined_open: int = 0
    quarantined_total: int = 0


def ingest_status(engine: Engine) -> IngestStatus:
    """Last record seen per source, last committed batch, quarantined lines."""
    t = rated_records
    out: dict[str, SourceStatus] = {}
    sources: list[SourceStatus] = []
    with engine.connect() as conn:
        for src, last, n in conn.execute(
            select(t.c.source, func.max(t.c.end), func.count()).group_by(t.c.source)
        ):
            sources.append(SourceStatus(str(src), aware(last), int(n)))
        b = ingest_batches
        for src, last, n, ins in conn.execute(
            select(
                b.c.source, func.max(b.c.committed_at), func.count(), func.sum(b.c.inserted)
            ).group_by(b.c.source)
        ):
            s = out.setdefault(str(src), SourceStatus(str(src), None, 0))
            s.last_commit = aware(last)
            s.batches = int(n)
            s.records = int(ins or 0)
        q = quarantined_lines
        total = 0
        open_ = 0
        for src, status, n in conn.execute(
            select(q.c.source, q.c.status, func.count()).group_by(q.c.source, q.c.status)
        ):
            total += int(n)
            if status == "open":
                open_ += int(n)
                out.setdefault(str(src), SourceStatus(str(src), None, 0)).quarantined_open += int(n)
    feeds = sorted(out.values(), key=lambda s: s.source)
    return IngestStatus(sorted(sources, key=lambda s: s.source), feeds, open_, total)


def recent_alerts(engine: Engine, account: str, limit: int = 20) -> list[dict[str, Any]]:
    if not inspect(engine).has_table("alerts"):
        return []
    from tollguard.store.cases_schema import alerts

    query = (
        select(alerts.c.payload, alerts.c.case_id)
        .where(alerts.c.account == account)
        .order_by(alerts.c.detected_at.desc(), alerts.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        out = []
        for payload, case_id in conn.execute(query):
            data = orjson.loads(payload)
            data["case_id"] = case_id
            for key in ("started_at", "detected_at"):
                data[key] = datetime.fromisoformat(data[key])
            out.append(data)
        return out


def local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(tz)).astimezone(UTC)
