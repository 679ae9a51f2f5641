"""Payout holds (premium-rate side): the revenue of a number under suspicion is kept back,
per number and period, until it is released (traffic was genuine) or forfeited (misuse),
always with a reason. Every change is in the audit log.

Holds of one number may not overlap in time while held: a period is held once, so the
report's totals never count the same calls twice.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
from sqlalchemy import Engine, and_, select

from tollguard.cases import audit
from tollguard.cdr.model import cost_from_e4
from tollguard.store.cases_schema import payout_holds

HOLD_STATUSES = ("held", "released", "forfeited")


class PayoutError(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(slots=True)
class Hold:
    id: str
    number: str
    period_start: date
    period_end: date
    amount: Decimal
    currency: str
    status: str
    reason: str
    case_id: str | None
    held_at: datetime
    held_by: str
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "amount": str(self.amount),
            "currency": self.currency,
            "status": self.status,
            "reason": self.reason,
            "case_id": self.case_id,
            "held_at": self.held_at.isoformat(),
            "held_by": self.held_by,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "resolved_by": self.resolved_by,
            "resolution": self.resolution,
        }


def amount_for_number(
    records: pl.DataFrame, number: str, start: date, end: date
) -> tuple[Decimal, int, str]:
    """Sum of rated cost of calls to ``number`` starting within [start, end] (UTC days):
    (amount, calls, currency)."""
    lo = datetime.combine(start, time(0), UTC)
    hi = datetime.combine(end + timedelta(days=1), time(0), UTC)
    hits = records.filter(
        (pl.col("callee_e164") == number) & (pl.col("start") >= lo) & (pl.col("start") < hi)
    )
    total = int(hits["cost_e4"].fill_null(0).sum() or 0)
    currencies = [c for c in hits["currency"].unique().to_list() if c]
    if len(currencies) > 1:
        raise PayoutError(f"calls to {number} are priced in several currencies: {currencies}")
    return cost_from_e4(total), hits.height, (currencies[0] if currencies else "EUR")


class PayoutLedger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hold(
        self,
        number: str,
        period_start: date,
        period_end: date,
        amount: Decimal,
        *,
        currency: str = "EUR",
        reason: str,
        actor: str,
        case_id: str | None = None,
        now: datetime | None = None,
    ) -> Hold:
        now = now or datetime.now(UTC)
        if period_end < period_start:
            raise PayoutError("the period ends before it starts", "give --from <= --to")
        if amount < 0:
            raise PayoutError("a held amount cannot be negative")
        if amount != amount.quantize(Decimal("0.0001")):
            raise PayoutError("amounts have at most 4 decimal places")
        if not reason.strip():
            raise PayoutError("a hold needs a reason", "say why, e.g. 'call generator, case C-..'")
        with self.engine.begin() as conn:
            overlap = conn.execute(
                select(payout_holds.c.id).where(
                    and_(
                        payout_holds.c.number == number,
                        payout_holds.c.status == "held",
                        payout_holds.c.period_start <= period_end,
                        payout_holds.c.period_end >= period_start,
                    )
                )
            ).first()
            if overlap is not None:
                raise PayoutError(
                    f"{number} already has a hold over part of this period ({overlap.id})",
                    "release or forfeit it first, or hold a period that does not overlap",
                )
            hid = f"H-{secrets.token_hex(5)}"
            conn.execute(
                payout_holds.insert().values(
                    id=hid,
                    number=number,
                    period_start=period_start,
                    period_end=period_end,
                    amount_e4=int(amount * 10000),
                    currency=currency,
                    status="held",
                    reason=reason,
                    case_id=case_id,
                    held_at=now,
                    held_by=actor,
                )
            )
            audit.append(
                conn,
                actor=actor,
                action="payout.hold",
                subject=number,
                data={
                    "hold": hid,
                    "period": [period_start.isoformat(), period_end.isoformat()],
                    "amount": str(amount),
                    "currency": currency,
                    "reason": reason,
                    "case": case_id,
                },
                at=now,
            )
        return self.get(hid)

    def release(
        self, hold_id: str, reason: str, *, actor: str, now: datetime | None = None
    ) -> Hold:
        return self._resolve(hold_id, "released", reason, actor, now)

    def forfeit(
        self, hold_id: str, reason: str, *, actor: str, now: datetime | None = None
    ) -> Hold:
        return self._resolve(hold_id, "forfeited", reason, actor, now)

    def _resolve(
        self, hold_id: str, status: str, reason: str, actor: str, now: datetime | None
    ) -> Hold:
        now = now or datetime.now(UTC)
        if not reason.strip():
            raise PayoutError(f"{status} needs a reason", "say why, e.g. the operator's proof")
        with self.engine.begin() as conn:
            row = conn.execute(select(payout_holds).where(payout_holds.c.id == hold_id)).first()
            if row is None:
                raise PayoutError(f"no hold {hold_id!r}", "`tollguard payouts list` shows the ids")
            if row.status != "held":
                raise PayoutError(f"hold {hold_id} is already {row.status}")
            conn.execute(
                payout_holds.update()
                .where(payout_holds.c.id == hold_id)
                .values(status=status, resolved_at=now, resolved_by=actor, resolution=reason)
            )
            audit.append(
                conn,
                actor=actor,
                action=f"payout.{status}",
                subject=row.number,
                data={
                    "hold": hold_id,
                    "amount": str(cost_from_e4(row.amount_e4)),
                    "currency": row.currency,
                    "reason": reason,
                },
                at=now,
            )
        return self.get(hold_id)

    def get(self, hold_id: str) -> Hold:
        with self.engine.connect() as conn:
            row = conn.execute(select(payout_holds).where(payout_holds.c.id == hold_id)).first()
        if row is None:
            raise PayoutError(f"no hold {hold_id!r}")
        return _hold(row)

    def holds(self, *, number: str | None = None, status: str | None = None) -> list[Hold]:
        query = select(payout_holds).order_by(payout_holds.c.held_at, payout_holds.c.id)
        if number:
            query = query.where(payout_holds.c.number == number)
        if status:
            if status not in HOLD_STATUSES:
                raise PayoutError(f"unknown status {status!r}", f"use {', '.join(HOLD_STATUSES)}")
            query = query.where(payout_holds.c.status == status)
        with self.engine.connect() as conn:
            return [_hold(r) for r in conn.execute(query)]

    def report(self, *, number: str | None = None) -> list[dict[str, Any]]:
        """Per number and currency: held, released and forfeited totals (exact)."""
        totals: dict[tuple[str, str], dict[str, int]] = {}
        for h in self.holds(number=number):
            t = totals.setdefault((h.number, h.currency), {s: 0 for s in HOLD_STATUSES})
            t[h.status] += int(h.amount * 10000)
        return [
            {
                "number": num,
                "currency": cur,
                **{s: str(cost_from_e4(v)) for s, v in t.items()},
            }
            for (num, cur), t in sorted(totals.items())
        ]


def _hold(row: Any) -> Hold:
    return Hold(
        row.id,
        row.number,
        row.period_start,
        row.period_end,
        cost_from_e4(row.amount_e4),
        row.currency,
        row.status,
        row.reason,
        row.case_id,
        row.held_at,
        row.held_by,
        row.resolved_at,
        row.resolved_by,
        row.resolution,
    )
