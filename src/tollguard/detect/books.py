"""Enforcement counters per account: what tollguard in the call path let through or
refused, and when it blocked the account or one of its destinations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tollguard.cdr.model import cost_from_e4

ZERO_MONEY = Decimal(0)


@dataclass(slots=True)
class EnforcementSummary:
    """What enforcement did (or, with ``enforce=False``, would have done) for one account."""

    account: str
    blocked_at: datetime | None = None  # the account was blocked from this event time on
    blocked_by: str | None = None  # id of the alert that blocked it
    cost_incurred: Decimal = ZERO_MONEY  # cost of the calls that went through
    cost_prevented: Decimal = ZERO_MONEY  # cost of the calls refused
    calls_refused: int = 0
    calls_allowed: int = 0
    # numbers/prefixes (for everyone) and this account's destinations ("country:TL",
    # "number_type:PREMIUM_RATE") blocked, with the time of the block
    blocked_subjects: dict[str, datetime] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "blocked_at": self.blocked_at.isoformat() if self.blocked_at else None,
            "blocked_by": self.blocked_by,
            "cost_incurred": str(self.cost_incurred),
            "cost_prevented": str(self.cost_prevented),
            "calls_refused": self.calls_refused,
            "calls_allowed": self.calls_allowed,
            "blocked_subjects": {k: v.isoformat() for k, v in self.blocked_subjects.items()},
        }


class Books:
    """Per-account enforcement counters (integer e4 money; converted in ``enforcement``)."""

    __slots__ = (
        "blocked_at",
        "blocked_by",
        "blocked_subjects",
        "calls_allowed",
        "calls_refused",
        "dest_blocks",
        "incurred_e4",
        "prevented_e4",
    )

    def __init__(self) -> None:
        self.blocked_at: datetime | None = None
        self.blocked_by: str | None = None
        self.blocked_subjects: dict[str, datetime] = {}
        self.dest_blocks: dict[str, tuple[float, datetime]] = {}  # "country:TL" -> block
        self.calls_allowed = 0
        self.calls_refused = 0
        self.incurred_e4 = 0
        self.prevented_e4 = 0

    def summary(self, account: str) -> EnforcementSummary:
        return EnforcementSummary(
            account=account,
            blocked_at=self.blocked_at,
            blocked_by=self.blocked_by,
            cost_incurred=cost_from_e4(self.incurred_e4),
            cost_prevented=cost_from_e4(self.prevented_e4),
            calls_refused=self.calls_refused,
            calls_allowed=self.calls_allowed,
            blocked_subjects=dict(self.blocked_subjects),
        )
