"""Daily counters per account, derived from ``rated_records``; retention purge.

``local_day`` is the call start's calendar day in the account's time zone, written at
ingest, so the counters are a plain ``GROUP BY`` on both databases. A purge first adds
the days it removes to ``counter_snapshots`` (same transaction), so the daily history
outlives the records: ``daily_counters`` = snapshots + what is still stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, Engine, Select, case, delete, func, select

from tollguard.cdr.model import Disposition, cost_from_e4
from tollguard.store.records import dialect_insert
from tollguard.store.schema import counter_snapshots, rated_records


@dataclass(frozen=True)
class DailyCounter:
    account: str
    day: date
    calls: int
    answered: int
    billsec: int
    cost_e4: int
    unrated: int

    @property
    def cost(self) -> Decimal:
        return cost_from_e4(self.cost_e4)


def _as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _live_query(account: str | None, since: date | None, until: date | None) -> Select[tuple]:  # type: ignore[type-arg]
    r = rated_records.c
    query = select(
        r.account,
        r.local_day,
        func.count().label("calls"),
        func.sum(case((r.disposition == Disposition.ANSWERED.value, 1), else_=0)).label("answered"),
        func.coalesce(func.sum(r.billsec), 0).label("billsec"),
        func.coalesce(func.sum(r.cost_e4), 0).label("cost_e4"),
        func.sum(case((r.cost_e4.is_(None), 1), else_=0)).label("unrated"),
    ).group_by(r.account, r.local_day)
    if account is not None:
        query = query.where(r.account == account)
    if since is not None:
        query = query.where(r.local_day >= since)
    if until is not None:
        query = query.where(r.local_day <= until)
    return query


def daily_counters(
    bind: Engine | Connection,
    account: str | None = None,
    since: date | None = None,
    until: date | None = None,
    *,
    include_snapshots: bool = True,
) -> list[DailyCounter]:
    """Calls, answered, billable seconds, cost and unrated calls per account and local day."""
    totals: dict[tuple[str, date], list[int]] = {}

    def add(acc: str, day: date | str, values: list[int]) -> None:
        slot = totals.setdefault((acc, _as_date(day)), [0, 0, 0, 0, 0])
        for i, v in enumerate(values):
            slot[i] += int(v or 0)

    def run(conn: Connection) -> None:
        for acc, day, *vals in conn.execute(_live_query(account, since, until)):
            add(acc, day, vals)
        if include_snapshots:
            s = counter_snapshots.c
            q = select(s.account, s.day, s.calls, s.answered, s.billsec, s.cost_e4, s.unrated)
            if account is not None:
                q = q.where(s.account == account)
            if since is not None:
                q = q.where(s.day >= since)
            if until is not None:
                q = q.where(s.day <= until)
            for acc, day, *vals in conn.execute(q):
                add(acc, day, vals)

    if isinstance(bind, Engine):
        with bind.connect() as conn:
            run(conn)
    else:
        run(bind)
    return [DailyCounter(acc, day, *vals) for (acc, day), vals in sorted(totals.items())]


@dataclass(frozen=True)
class PurgeResult:
    cutoff_day: date
    records_deleted: int
    days_snapshotted: int


def purge_older_than(engine: Engine, days: int, *, today: date | None = None) -> PurgeResult:
    """Delete rated records whose local call day is more than ``days`` days ago.

    The removed days' counters are added to ``counter_snapshots`` in the same
    transaction. Alerts, cases and evidence (other tables) are never touched.
    """
    if days < 0:
        raise ValueError(f"days must be 0 or more, not {days}")
    today = today or datetime.now(UTC).date()
    cutoff = today - timedelta(days=days)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        old = [
            {
                "account": acc,
                "day": _as_date(day),
                "calls": calls,
                "answered": answered,
                "billsec": billsec,
                "cost_e4": cost,
                "unrated": unrated,
                "taken_at": now,
            }
            for acc, day, calls, answered, billsec, cost, unrated in conn.execute(
                _live_query(None, None, cutoff - timedelta(days=1))
            )
        ]
        if old:
            stmt = dialect_insert(conn, counter_snapshots)
            ex = stmt.excluded
            s = counter_snapshots.c
            stmt = stmt.on_conflict_do_update(
                index_elements=["account", "day"],
                set_={
                    "calls": s.calls + ex.calls,
                    "answered": s.answered + ex.answered,
                    "billsec": s.billsec + ex.billsec,
                    "cost_e4": s.cost_e4 + ex.cost_e4,
                    "unrated": s.unrated + ex.unrated,
                    "taken_at": ex.taken_at,
                },
            )
            conn.execute(stmt, old)
        deleted = conn.execute(
            delete(rated_records).where(rated_records.c.local_day < cutoff)
        ).rowcount
    return PurgeResult(cutoff, int(deleted or 0), len(old))
