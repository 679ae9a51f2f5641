"""Cases: the unit an analyst works on. Statuses, timers and their plain-language durations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from tollguard.cdr.model import cost_from_e4

Status = Literal["new", "acknowledged", "confirmed_fraud", "false_positive", "closed"]
STATUSES: tuple[Status, ...] = (
    "new",
    "acknowledged",
    "confirmed_fraud",
    "false_positive",
    "closed",
)
OPEN_STATUSES: tuple[Status, ...] = ("new", "acknowledged", "confirmed_fraud", "false_positive")
SEVERITY_RANK = {"warning": 1, "critical": 2}

# verb -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], Status]] = {
    "ack": (frozenset({"new"}), "acknowledged"),
    "confirm": (frozenset({"new", "acknowledged", "false_positive"}), "confirmed_fraud"),
    "false_positive": (frozenset({"new", "acknowledged", "confirmed_fraud"}), "false_positive"),
    "close": (frozenset({"confirmed_fraud", "false_positive"}), "closed"),
}
ACTIONS = ("block", "unblock", "hold_payout", "release_payout", "other")


class CaseError(ValueError):
    """A request the case cannot follow; ``hint`` says what would work."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class CaseNotFound(CaseError):
    pass


def human_duration(delta: timedelta) -> str:
    """'11 minutes', '2 hours 5 minutes', '3 days 4 hours', '40 seconds'."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds} second{'s' if seconds != 1 else ''}"
    units = [("day", 86400), ("hour", 3600), ("minute", 60)]
    parts: list[str] = []
    for name, size in units:
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {name}{'s' if n != 1 else ''}")
        if len(parts) == 2:
            break
    return sign + " ".join(parts)


@dataclass(slots=True)
class Timer:
    name: str
    label: str
    at: datetime | None
    since_onset: timedelta | None

    def sentence(self) -> str:
        if self.at is None:
            return f"{self.label}: not yet"
        if self.since_onset is None or self.name == "onset":
            return f"{self.label}: {self.at.isoformat()}"
        after = human_duration(self.since_onset)
        return f"{self.label} {after} after onset ({self.at.isoformat()})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "at": self.at.isoformat() if self.at else None,
            "seconds_after_onset": (
                int(self.since_onset.total_seconds()) if self.since_onset is not None else None
            ),
            "text": self.sentence(),
        }


@dataclass(slots=True)
class Case:
    id: str
    key: str
    account: str
    subject: str
    subject_kind: str
    status: Status
    severity: str
    title: str
    currency: str
    cost_e4: int
    records: int
    alert_count: int
    first_record_at: datetime
    first_alert_at: datetime
    last_alert_at: datetime
    created_at: datetime
    updated_at: datetime
    assignee: str | None = None
    first_notified_at: datetime | None = None
    acknowledged_at: datetime | None = None
    blocked_at: datetime | None = None
    verdict_at: datetime | None = None
    closed_at: datetime | None = None
    escalated_at: datetime | None = None
    reopened: int = 0
    events: list[CaseEvent] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cost(self) -> Decimal:
        return cost_from_e4(self.cost_e4)

    @property
    def is_open(self) -> bool:
        return self.status != "closed"

    def timers(self) -> list[Timer]:
        onset = self.first_record_at
        points = [
            ("onset", "first fraudulent record", onset),
            ("first_alert", "alerted", self.first_alert_at),
            ("first_notification", "notified", self.first_notified_at),
            ("acknowledged", "acknowledged", self.acknowledged_at),
            ("blocked", "blocked", self.blocked_at),
            ("verdict", "verdict", self.verdict_at),
            ("closed", "closed", self.closed_at),
        ]
        return [Timer(n, label, at, (at - onset) if at else None) for n, label, at in points]

    def to_dict(self, *, detail: bool = False) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        out: dict[str, Any] = {
            "id": self.id,
            "key": self.key,
            "account": self.account,
            "subject": self.subject,
            "subject_kind": self.subject_kind,
            "status": self.status,
            "severity": self.severity,
            "title": self.title,
            "assignee": self.assignee,
            "cost": str(self.cost),
            "currency": self.currency,
            "records": self.records,
            "alerts": self.alert_count,
            "first_record_at": iso(self.first_record_at),
            "first_alert_at": iso(self.first_alert_at),
            "last_alert_at": iso(self.last_alert_at),
            "first_notified_at": iso(self.first_notified_at),
            "acknowledged_at": iso(self.acknowledged_at),
            "blocked_at": iso(self.blocked_at),
            "verdict_at": iso(self.verdict_at),
            "closed_at": iso(self.closed_at),
            "escalated_at": iso(self.escalated_at),
            "reopened": self.reopened,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "timers": {t.name: t.to_dict() for t in self.timers()},
        }
        if detail:
            out["alert_list"] = self.alerts
            out["events"] = [e.to_dict() for e in self.events]
        return out


@dataclass(slots=True)
class CaseEvent:
    id: int
    case_id: str
    at: datetime
    kind: str
    actor: str
    text: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "actor": self.actor,
            "text": self.text,
            "data": self.data,
        }
