"""An alert: one deviating situation, explained, with evidence. Serialized as JSON Lines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import orjson

Severity = Literal["warning", "critical"]
EVIDENCE_CAP = 50  # record ids kept per alert; the total count is kept beside them


@dataclass(slots=True)
class Evidence:
    record_ids: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, record_id: str) -> None:
        self.total += 1
        if len(self.record_ids) < EVIDENCE_CAP:
            self.record_ids.append(record_id)


@dataclass(slots=True)
class Alert:
    id: str  # deterministic: detector, account, subject and first record -> same id every replay
    detector: str
    severity: Severity
    account: str
    subject: str  # E.164 number, prefix ("+67077"), country ("TL") or account
    subject_kind: Literal["number", "prefix", "country", "account", "number_type"]
    started_at: datetime  # first record of the pattern
    detected_at: datetime  # event time of the record that triggered (or escalated) it
    records: int
    cost: Decimal
    currency: str
    explanation: dict[str, Any]  # {"parameter", "value", "threshold"|"expected", "why"}
    evidence: Evidence
    report_only: bool = False
    escalated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "severity": self.severity,
            "account": self.account,
            "subject": self.subject,
            "subject_kind": self.subject_kind,
            "started_at": self.started_at.isoformat(),
            "detected_at": self.detected_at.isoformat(),
            "escalated_at": self.escalated_at.isoformat() if self.escalated_at else None,
            "records": self.records,
            "cost": str(self.cost),
            "currency": self.currency,
            "explanation": self.explanation,
            "evidence": {
                "record_ids": list(self.evidence.record_ids),
                "total": self.evidence.total,
            },
            "report_only": self.report_only,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        ev = data.get("evidence") or {}
        esc = data.get("escalated_at")
        return cls(
            id=data["id"],
            detector=data["detector"],
            severity=data["severity"],
            account=data["account"],
            subject=data["subject"],
            subject_kind=data.get("subject_kind", "account"),
            started_at=datetime.fromisoformat(data["started_at"]),
            detected_at=datetime.fromisoformat(data["detected_at"]),
            records=int(data["records"]),
            cost=Decimal(data["cost"]),
            currency=data["currency"],
            explanation=dict(data["explanation"]),
            evidence=Evidence(list(ev.get("record_ids", [])), int(ev.get("total", 0))),
            report_only=bool(data.get("report_only", False)),
            escalated_at=datetime.fromisoformat(esc) if esc else None,
        )


def alerts_jsonl(alerts: Iterable[Alert]) -> bytes:
    """Alerts as JSON Lines, one object per line: the format of ``--alerts-out``."""
    return b"".join(orjson.dumps(a.to_dict()) + b"\n" for a in alerts)
