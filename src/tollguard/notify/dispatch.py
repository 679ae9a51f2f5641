"""Who is told what, and a record of every delivery: routing by severity, per-account
contacts (the customer is told, not only the operator), escalation contacts, and the
dead-letter list of deliveries that failed after every retry.

Routing (see docs/notifications.md):

- ``case.opened`` / ``case.reopened`` / ``case.severity_raised``: the account's
  ``contacts`` and the operator's ``[[defaults.operators]]`` whose ``min_severity`` the
  case's severity reaches;
- ``case.escalated`` (not acknowledged in time): the account's ``escalation.contacts``
  and the operators, whatever their ``min_severity``.

Every delivery is a row in ``notifications`` (pending -> sent | dead) and an audit entry.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, select

from tollguard.cases import audit
from tollguard.cases.model import SEVERITY_RANK, Case
from tollguard.detect.alert import Alert
from tollguard.notify.mail import MailSender
from tollguard.notify.webhook import Delivery, WebhookSender
from tollguard.policy import Contact, Policy
from tollguard.store.cases_schema import notifications

DEFAULT_SECRET_ENV = "TOLLGUARD_WEBHOOK_SECRET"
EVENTS = ("case.opened", "case.reopened", "case.severity_raised", "case.escalated", "test")


def env_secret(name: str | None) -> str | None:
    return os.environ.get(name or DEFAULT_SECRET_ENV)


def route(policy: Policy | None, case: Case, event: str) -> list[Contact]:
    """The contacts to tell about ``event`` on ``case`` (deduplicated, in policy order)."""
    if policy is None:
        return []
    acc = policy.account(case.account)
    if event == "case.escalated":
        chosen = [*(acc.escalation.contacts if acc.escalation else []), *acc.operators]
    else:
        rank = SEVERITY_RANK.get(case.severity, 1)
        chosen = [
            c
            for c in [*acc.contacts, *acc.operators]
            if rank >= SEVERITY_RANK.get(c.min_severity, 1)
        ]
    out: list[Contact] = []
    seen: set[tuple[str | None, str | None]] = set()
    for c in chosen:
        if (c.email, c.webhook) not in seen:
            seen.add((c.email, c.webhook))
            out.append(c)
    return out


def payload_for(
    case: Case, event: str, alert: Alert | None, now: datetime, delivery: str
) -> dict[str, Any]:
    return {
        "event": event,
        "delivery": delivery,
        "sent_at": now.isoformat(),
        "summary": summary_line(case, event),
        "case": case.to_dict(),
        "alert": alert.to_dict() if alert else None,
    }


def summary_line(case: Case, event: str) -> str:
    verb = {
        "case.opened": "new case",
        "case.reopened": "case reopened",
        "case.severity_raised": "case raised to critical",
        "case.escalated": "NOT ACKNOWLEDGED",
        "test": "test message",
    }.get(event, event)
    return (
        f"[{case.severity.upper()}] {verb} {case.id}: {case.title}; "
        f"{case.alert_count} alert(s), {case.records} calls, {case.currency} {case.cost}"
    )


def mail_text(payload: dict[str, Any]) -> str:
    case = payload["case"]
    lines = [
        payload["summary"],
        "",
        f"Case:      {case['id']} ({case['status']})",
        f"Account:   {case['account']}",
        f"Subject:   {case['subject_kind']} {case['subject']}",
        f"Cost:      {case['currency']} {case['cost']} (largest alert so far)",
        "",
        "Timeline:",
    ]
    lines += [f"  - {t['text']}" for t in case["timers"].values()]
    alert = payload.get("alert")
    if alert:
        exp = alert["explanation"]
        limit = exp.get("threshold", exp.get("expected"))
        lines += [
            "",
            f"Alert {alert['detector']} ({alert['severity']}) on {alert['subject']}:",
            f"  {exp.get('parameter')} = {exp.get('value')} (threshold/expected {limit})",
            f"  {exp.get('why', '')}",
        ]
    lines += [
        "",
        f"Acknowledge: tollguard cases ack {case['id']}",
        f"Details:     tollguard cases show {case['id']}",
    ]
    return "\n".join(lines) + "\n"


@dataclass(slots=True)
class DeliveryRecord:
    id: str
    case_id: str | None
    event: str
    channel: str
    target: str
    contact: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "case_id": self.case_id,
            "event": self.event,
            "channel": self.channel,
            "target": self.target,
            "contact": self.contact,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
        }


class Notifier:
    """Implements ``CaseNotifier`` for ``CaseService``; also replays dead letters."""

    def __init__(
        self,
        engine: Engine,
        policy: Policy | None,
        *,
        webhook: WebhookSender | None = None,
        mail: MailSender | None = None,
        secret_for: Callable[[str | None], str | None] = env_secret,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.webhook = webhook or WebhookSender()
        self.mail = mail
        self.secret_for = secret_for

    def notify(self, case: Case, event: str, alert: Alert | None, now: datetime) -> datetime | None:
        first_ok: datetime | None = None
        for contact in route(self.policy, case, event):
            for channel, target in (("webhook", contact.webhook), ("email", contact.email)):
                if not target:
                    continue
                rec = self._deliver_new(case, event, alert, now, contact, channel, target)
                if rec.status == "sent" and first_ok is None:
                    first_ok = now
        return first_ok

    def _deliver_new(
        self,
        case: Case,
        event: str,
        alert: Alert | None,
        now: datetime,
        contact: Contact,
        channel: str,
        target: str,
    ) -> DeliveryRecord:
        nid = f"N-{secrets.token_hex(8)}"
        body = payload_for(case, event, alert, now, nid)
        stored: dict[str, Any] = {"body": body}
        if channel == "email":
            stored["subject"] = f"tollguard: {body['summary']}"
            stored["text"] = mail_text(body)
        with self.engine.begin() as conn:
            conn.execute(
                notifications.insert().values(
                    id=nid,
                    case_id=case.id,
                    event=event,
                    channel=channel,
                    target=target,
                    contact=contact.name,
                    secret_env=contact.webhook_secret_env,
                    status="pending",
                    attempts=0,
                    payload=orjson.dumps(stored).decode(),
                    created_at=now,
                )
            )
        return self._attempt(nid, now)

    def _attempt(self, nid: str, now: datetime) -> DeliveryRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(notifications).where(notifications.c.id == nid)).one()
        stored = orjson.loads(row.payload)
        if row.channel == "webhook":
            result = self._send_webhook(row.target, row.event, nid, stored, row.secret_env)
        else:
            result = self._send_mail(row.target, nid, stored)
        status = "sent" if result.ok else "dead"
        with self.engine.begin() as conn:
            conn.execute(
                notifications.update()
                .where(notifications.c.id == nid)
                .values(
                    status=status,
                    attempts=row.attempts + result.attempts,
                    last_error=result.error or None,
                    sent_at=now if result.ok else None,
                )
            )
            audit.append(
                conn,
                actor="tollguard",
                action=f"notification.{status}",
                subject=row.case_id or nid,
                data={
                    "notification": nid,
                    "event": row.event,
                    "channel": row.channel,
                    "target": row.target,
                    "attempts": result.attempts,
                    "error": result.error,
                },
                at=now,
            )
        return self.get(nid)

    def _send_webhook(
        self, url: str, event: str, nid: str, stored: dict[str, Any], secret_env: str | None
    ) -> Delivery:
        secret = self.secret_for(secret_env)
        if secret_env and not secret:
            return Delivery(False, 0, error=f"secret ${secret_env} is not set", retryable=False)
        body = orjson.dumps(stored["body"])
        return self.webhook.send(url, body, secret=secret, event=event, delivery_id=nid)

    def _send_mail(self, to: str, nid: str, stored: dict[str, Any]) -> Delivery:
        if self.mail is None:
            return Delivery(
                False, 0, error="no SMTP server configured ($TOLLGUARD_SMTP_URL)", retryable=False
            )
        msg = self.mail.build(
            [to],
            stored["subject"],
            stored["text"],
            headers={"X-Tollguard-Delivery": nid, "X-Tollguard-Event": stored["body"]["event"]},
        )
        return self.mail.send(msg)

    # -- dead letters -----------------------------------------------------------------
    def get(self, nid: str) -> DeliveryRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(notifications).where(notifications.c.id == nid)).first()
        if row is None:
            raise KeyError(f"no notification {nid!r}")
        return _record(row)

    def deliveries(
        self, *, status: str | None = None, case_id: str | None = None
    ) -> list[DeliveryRecord]:
        query = select(notifications).order_by(notifications.c.created_at, notifications.c.id)
        if status:
            query = query.where(notifications.c.status == status)
        if case_id:
            query = query.where(notifications.c.case_id == case_id)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query)]

    def dead_letters(self) -> list[DeliveryRecord]:
        return self.deliveries(status="dead")

    def replay(
        self, ids: Sequence[str] = (), *, now: datetime | None = None
    ) -> list[DeliveryRecord]:
        """Try dead letters again (all, or the given ids); the delivery id stays the same."""
        now = now or datetime.now(UTC)
        targets = list(ids) or [r.id for r in self.dead_letters()]
        out: list[DeliveryRecord] = []
        for nid in targets:
            rec = self.get(nid)
            if rec.status != "dead":
                raise ValueError(f"{nid} is {rec.status}, not a dead letter")
            out.append(self._attempt(nid, now))
        return out


def _record(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        row.id,
        row.case_id,
        row.event,
        row.channel,
        row.target,
        row.contact,
        row.status,
        int(row.attempts),
        row.last_error,
        row.created_at,
        row.sent_at,
    )
