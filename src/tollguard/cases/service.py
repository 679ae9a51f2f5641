"""``CaseService``: alerts into cases, the analyst workflow, timers, actions and tuning.

Every change is one database transaction that also appends to the audit log, so a case
and its audit trail never disagree. Times come from the caller (``now``), which is the
event time in a replay (`tollguard cases import`) and the clock in the live service, so
tests and replays are deterministic.

Grouping (``default_grouping``): number-centric patterns (traffic pumping to a premium
number, tariff discrepancies, Wangiri callbacks) group by the called number, whatever
account placed the calls; everything else groups by account, so the many detectors that
fire on one hacked PBX (spend limit, new country, night traffic) make one case.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Engine, Row, and_, select

from tollguard.cases import audit
from tollguard.cases.model import (
    ACTIONS,
    OPEN_STATUSES,
    SEVERITY_RANK,
    STATUSES,
    TRANSITIONS,
    Case,
    CaseError,
    CaseEvent,
    CaseNotFound,
)
from tollguard.detect.alert import Alert
from tollguard.policy import Policy
from tollguard.store.cases_schema import alerts as alerts_t
from tollguard.store.cases_schema import case_events, case_tuning
from tollguard.store.cases_schema import cases as cases_t

NUMBER_CENTRIC = ("pump", "ait", "tariff", "wangiri", "prs", "premium")
ENGINE_ACTOR = "tollguard"


log = logging.getLogger(__name__)


def default_grouping(alert: Alert) -> tuple[str, str, str]:
    """(key, subject, subject_kind) of the case an alert belongs to."""
    detector = alert.detector.lower()
    if alert.subject_kind == "number" and (
        not alert.account or any(word in detector for word in NUMBER_CENTRIC)
    ):
        return f"number:{alert.subject}", alert.subject, "number"
    return f"account:{alert.account}", alert.account, "account"


Grouping = Callable[[Alert], tuple[str, str, str]]


class CaseNotifier(Protocol):
    """Delivers case events; returns when the first delivery succeeded (None: none did)."""

    def notify(
        self, case: Case, event: str, alert: Alert | None, now: datetime
    ) -> datetime | None: ...


class Blocker(Protocol):
    """The live service's block switch (limits state); absent in file replays."""

    def block(self, account: str, reason: str, now: datetime) -> None: ...

    def unblock(self, account: str, reason: str, now: datetime) -> None: ...


@dataclass(slots=True)
class IngestResult:
    case: Case
    outcome: str  # created | joined | reopened | updated | duplicate
    alert_id: str
    severity_raised: bool = False
    notified: bool = False


@dataclass(slots=True)
class TuningRecord:
    account: str
    detector: str
    option: str
    value: str
    case_id: str


@dataclass
class CaseService:
    """The case workflow over a SQLAlchemy engine (SQLite or PostgreSQL)."""

    engine: Engine
    policy: Policy | None = None
    notifier: CaseNotifier | None = None
    blocker: Blocker | None = None
    grouping: Grouping = default_grouping
    reopen_within: timedelta = timedelta(days=30)
    join_within: timedelta = timedelta(days=3)  # case law: react within three days
    tuning_hooks: list[Callable[[TuningRecord], None]] = field(default_factory=list)

    # -- alerts into cases --------------------------------------------------
    def ingest(self, alert: Alert, *, now: datetime | None = None) -> IngestResult:
        """File one alert: join the open case of its pattern, reopen a recently closed
        one, or open a new case. Idempotent per alert id (a replay changes nothing);
        an alert seen again with a higher severity or more records updates the case."""
        now = now or alert.detected_at
        with self.engine.begin() as conn:
            result = self._ingest(conn, alert, now)
        return self._announce(alert, result, now)

    def ingest_batch(self, alerts: Iterable[Alert]) -> list[IngestResult]:
        """``ingest`` for the alerts of one batch of records, in event order, in one
        transaction (one durable commit instead of one per alert); notifications go
        out after it. Should the batch fail, each alert is filed on its own, so one bad
        alert loses no other; its error is raised after the rest are filed."""
        ordered = sorted(alerts, key=lambda a: (a.detected_at, a.id))
        try:
            with self.engine.begin() as conn:
                results = [self._ingest(conn, a, a.detected_at) for a in ordered]
        except Exception:
            log.warning("a batch of %d alerts failed; filing them one by one", len(ordered))
            return self._ingest_each(ordered)
        return [self._announce(a, r, a.detected_at) for a, r in zip(ordered, results, strict=True)]

    def _ingest_each(self, alerts: list[Alert]) -> list[IngestResult]:
        out: list[IngestResult] = []
        failed: Exception | None = None
        for alert in alerts:
            try:
                out.append(self.ingest(alert))
            except Exception as exc:
                log.error("alert %s (%s) not filed into a case: %s", alert.id, alert.detector, exc)
                failed = failed or exc
        if failed is not None:
            raise failed
        return out

    def _announce(self, alert: Alert, result: IngestResult, now: datetime) -> IngestResult:
        """Tell the case's subscribers what the alert changed (opened, reopened, raised)."""
        event = {"created": "case.opened", "reopened": "case.reopened"}.get(result.outcome)
        if event is None and result.severity_raised:
            event = "case.severity_raised"
        if self.notifier is not None and event is not None:
            sent = self.notifier.notify(result.case, event, alert, now)
            result.notified = sent is not None
            if sent is not None:
                self._mark_notified(result.case.id, sent)
            result.case = self.get(result.case.id)
        return result

    def ingest_many(self, alerts: Iterable[Alert], *, escalate: bool = True) -> list[IngestResult]:
        """Replay alerts in event order; escalations fall due by the alerts' event time."""
        out: list[IngestResult] = []
        for alert in sorted(alerts, key=lambda a: (a.detected_at, a.id)):
            if escalate:
                self.escalate_due(alert.detected_at)
            out.append(self.ingest(alert))
        return out

    def _ingest(self, conn: Connection, alert: Alert, now: datetime) -> IngestResult:
        existing = conn.execute(select(alerts_t).where(alerts_t.c.id == alert.id)).first()
        if existing is not None:
            return self._update_alert(conn, existing, alert, now)
        key, subject, subject_kind = self.grouping(alert)
        case_row = self._open_case_for(conn, alert, key)
        outcome = "joined"
        if case_row is None:
            closed = conn.execute(
                select(cases_t)
                .where(and_(cases_t.c.key == key, cases_t.c.status == "closed"))
                .order_by(cases_t.c.closed_at.desc())
                .limit(1)
            ).first()
            if closed is not None and closed.closed_at + self.reopen_within >= alert.detected_at:
                case_id = closed.id
                outcome = "reopened"
                conn.execute(
                    cases_t.update()
                    .where(cases_t.c.id == case_id)
                    .values(
                        status="new",
                        reopened=closed.reopened + 1,
                        acknowledged_at=None,
                        verdict_at=None,
                        closed_at=None,
                        escalated_at=None,
                        last_alert_at=alert.detected_at,
                        updated_at=now,
                    )
                )
                self._event(
                    conn,
                    case_id,
                    now,
                    "reopened",
                    ENGINE_ACTOR,
                    f"pattern returned: {alert.detector} on {alert.subject}",
                    {"alert": alert.id, "previously_closed_at": closed.closed_at.isoformat()},
                )
            else:
                case_id = self._new_case(conn, key, subject, subject_kind, alert, now)
                outcome = "created"
        else:
            case_id = case_row.id
        before = None if case_row is None else str(case_row.severity)
        self._insert_alert(conn, case_id, alert, now)
        self._absorb(conn, case_id, alert, now)
        self._event(
            conn,
            case_id,
            now,
            "alert",
            ENGINE_ACTOR,
            f"{alert.severity} {alert.detector} on {alert.subject}: "
            f"{alert.explanation.get('why', '')}",
            {"alert": alert.id},
        )
        audit.append(
            conn,
            actor=ENGINE_ACTOR,
            action="alert",
            subject=case_id,
            data={"outcome": outcome, "alert": alert.to_dict()},
            at=now,
        )
        self._auto_block(conn, case_id, alert, now)
        case = self._load(conn, case_id)
        raised = before is not None and SEVERITY_RANK[case.severity] > SEVERITY_RANK[before]
        return IngestResult(case, outcome, alert.id, raised)

    def _open_case_for(self, conn: Connection, alert: Alert, key: str) -> Row[Any] | None:
        """The open case an alert joins: its own pattern's case; else, for an alert about
        a number, the open case of its account; else, for an account alert, an open case
        about a number that this account's calls are part of. Only a case active within
        ``join_within`` before the alert's first record is joined: a pattern that starts
        long after a case went quiet is a new case."""
        horizon = alert.started_at - self.join_within
        active = and_(cases_t.c.status.in_(OPEN_STATUSES), cases_t.c.last_alert_at >= horizon)
        candidates = [cases_t.c.key == key]
        if key.startswith("number:") and alert.account:
            candidates.append(cases_t.c.key == f"account:{alert.account}")
        elif key.startswith("account:"):
            in_number_case = select(alerts_t.c.case_id).where(alerts_t.c.account == alert.account)
            candidates.append(
                and_(cases_t.c.key.startswith("number:"), cases_t.c.id.in_(in_number_case))
            )
        for condition in candidates:
            row = conn.execute(
                select(cases_t)
                .where(and_(condition, active))
                .order_by(cases_t.c.last_alert_at.desc())
                .limit(1)
            ).first()
            if row is not None:
                return row
        return None

    def _update_alert(
        self, conn: Connection, existing: Row[Any], alert: Alert, now: datetime
    ) -> IngestResult:
        case_id = str(existing.case_id)
        old = orjson.loads(existing.payload)
        new = alert.to_dict()
        if old == new:
            return IngestResult(self._load(conn, case_id), "duplicate", alert.id)
        raised = SEVERITY_RANK[alert.severity] > SEVERITY_RANK[str(existing.severity)]
        conn.execute(
            alerts_t.update()
            .where(alerts_t.c.id == alert.id)
            .values(
                severity=alert.severity,
                detected_at=alert.detected_at,
                escalated_at=alert.escalated_at,
                records=alert.records,
                cost_e4=_e4(alert),
                payload=orjson.dumps(new).decode(),
            )
        )
        case_before = self._load(conn, case_id)
        self._absorb(conn, case_id, alert, now)
        text = (
            f"alert {alert.detector} raised to {alert.severity}"
            if raised
            else f"alert {alert.detector} updated: {alert.records} records"
        )
        self._event(conn, case_id, now, "alert_updated", ENGINE_ACTOR, text, {"alert": alert.id})
        audit.append(
            conn,
            actor=ENGINE_ACTOR,
            action="alert_updated",
            subject=case_id,
            data={"alert": new},
            at=now,
        )
        self._auto_block(conn, case_id, alert, now)
        case = self._load(conn, case_id)
        raised_case = SEVERITY_RANK[case.severity] > SEVERITY_RANK[case_before.severity]
        return IngestResult(case, "updated", alert.id, raised_case)

    def _new_case(
        self,
        conn: Connection,
        key: str,
        subject: str,
        subject_kind: str,
        alert: Alert,
        now: datetime,
    ) -> str:
        digest = hashlib.sha256(f"{key}\n{alert.id}".encode()).hexdigest()
        case_id = f"C-{digest[:10]}"
        n = 10
        while conn.execute(select(cases_t.c.id).where(cases_t.c.id == case_id)).first():
            n += 2
            case_id = f"C-{digest[:n]}"
        title = (
            f"{alert.detector} on number {subject}"
            if subject_kind == "number"
            else f"{alert.detector} on account {subject}"
        )
        conn.execute(
            cases_t.insert().values(
                id=case_id,
                key=key,
                account=alert.account,
                subject=subject,
                subject_kind=subject_kind,
                status="new",
                severity=alert.severity,
                assignee=None,
                title=title,
                currency=alert.currency,
                cost_e4=0,
                records=0,
                alert_count=0,
                first_record_at=alert.started_at,
                first_alert_at=alert.detected_at,
                last_alert_at=alert.detected_at,
                reopened=0,
                created_at=now,
                updated_at=now,
            )
        )
        self._event(conn, case_id, now, "opened", ENGINE_ACTOR, title, {"alert": alert.id})
        return case_id

    def _insert_alert(self, conn: Connection, case_id: str, alert: Alert, now: datetime) -> None:
        conn.execute(
            alerts_t.insert().values(
                id=alert.id,
                case_id=case_id,
                detector=alert.detector,
                severity=alert.severity,
                account=alert.account,
                subject=alert.subject,
                subject_kind=alert.subject_kind,
                started_at=alert.started_at,
                detected_at=alert.detected_at,
                escalated_at=alert.escalated_at,
                records=alert.records,
                cost_e4=_e4(alert),
                currency=alert.currency,
                report_only=int(alert.report_only),
                payload=orjson.dumps(alert.to_dict()).decode(),
                received_at=now,
            )
        )

    def _absorb(self, conn: Connection, case_id: str, alert: Alert, now: datetime) -> None:
        """Recompute the case's summary from its alerts (cost: the largest alert's cost,
        since detectors overlap on the same calls; the evidence pack sums the records).
        Onset and first alert come from the critical alerts when there are any: warnings
        that came before (a new country, a late call) stay in the history but do not
        move the start of the fraud."""
        row = conn.execute(select(cases_t).where(cases_t.c.id == case_id)).one()
        rows = conn.execute(select(alerts_t).where(alerts_t.c.case_id == case_id)).all()
        severity = max((r.severity for r in rows), key=lambda s: SEVERITY_RANK[s])
        defining = [r for r in rows if r.severity == "critical"] or rows
        conn.execute(
            cases_t.update()
            .where(cases_t.c.id == case_id)
            .values(
                severity=severity,
                cost_e4=max(r.cost_e4 for r in rows),
                records=max(r.records for r in rows),
                alert_count=len(rows),
                first_record_at=min(r.started_at for r in defining),
                first_alert_at=min(r.escalated_at or r.detected_at for r in defining),
                last_alert_at=max(row.last_alert_at, alert.detected_at),
                updated_at=now,
            )
        )

    def _auto_block(self, conn: Connection, case_id: str, alert: Alert, now: datetime) -> None:
        """With ``on_critical = "block"`` the engine blocked the account when a critical
        alert fired (unless report-only): record that as the case's block time."""
        if self.policy is None or alert.severity != "critical" or alert.report_only:
            return
        acc = self.policy.account(alert.account)
        if acc.on_critical != "block" or acc.report_only:
            return
        row = conn.execute(select(cases_t.c.blocked_at).where(cases_t.c.id == case_id)).one()
        if row.blocked_at is not None:
            return
        at = alert.escalated_at or alert.detected_at
        conn.execute(cases_t.update().where(cases_t.c.id == case_id).values(blocked_at=at))
        self._event(
            conn,
            case_id,
            at,
            "action",
            ENGINE_ACTOR,
            f"account {alert.account} blocked by policy (on_critical = block)",
            {"action": "block", "account": alert.account, "automatic": True},
        )
        audit.append(
            conn,
            actor=ENGINE_ACTOR,
            action="block",
            subject=case_id,
            data={"account": alert.account, "alert": alert.id, "automatic": True},
            at=at,
        )

    def _mark_notified(self, case_id: str, sent: datetime) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(
                select(cases_t.c.first_notified_at).where(cases_t.c.id == case_id)
            ).one()
            if row.first_notified_at is None or sent < row.first_notified_at:
                conn.execute(
                    cases_t.update().where(cases_t.c.id == case_id).values(first_notified_at=sent)
                )

    # -- escalation -----------------------------------------------------------
    def escalate_due(self, now: datetime) -> list[Case]:
        """Escalate every case still ``new`` (not acknowledged) longer than its account's
        ``escalation.after_minutes`` after its first alert. Deterministic in ``now``."""
        if self.policy is None:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(cases_t).where(
                    and_(cases_t.c.status == "new", cases_t.c.escalated_at.is_(None))
                )
            ).all()
        due: list[Case] = []
        for row in rows:
            esc = self.policy.account(row.account).escalation
            if esc is None or row.first_alert_at + timedelta(minutes=esc.after_minutes) > now:
                continue
            at = row.first_alert_at + timedelta(minutes=esc.after_minutes)
            with self.engine.begin() as conn:
                conn.execute(cases_t.update().where(cases_t.c.id == row.id).values(escalated_at=at))
                self._event(
                    conn,
                    row.id,
                    at,
                    "escalated",
                    ENGINE_ACTOR,
                    f"not acknowledged {esc.after_minutes} minutes after the first alert",
                    {"after_minutes": esc.after_minutes},
                )
                audit.append(
                    conn,
                    actor=ENGINE_ACTOR,
                    action="escalated",
                    subject=row.id,
                    data={"after_minutes": esc.after_minutes},
                    at=at,
                )
            case = self.get(row.id)
            if self.notifier is not None:
                sent = self.notifier.notify(case, "case.escalated", None, at)
                if sent is not None:
                    self._mark_notified(case.id, sent)
                    case = self.get(case.id)
            due.append(case)
        return due

    # -- workflow ---------------------------------------------------------------
    def ack(self, case_id: str, *, actor: str, now: datetime | None = None, note: str = "") -> Case:
        return self._transition(case_id, "ack", actor, now, note)

    def confirm(
        self, case_id: str, *, actor: str, now: datetime | None = None, note: str = ""
    ) -> Case:
        return self._transition(case_id, "confirm", actor, now, note)

    def false_positive(
        self,
        case_id: str,
        *,
        actor: str,
        now: datetime | None = None,
        note: str = "",
        tune: bool = True,
    ) -> Case:
        """Mark a false positive; with ``tune`` the case's subjects become known for the
        account (a new country, number or prefix), see ``tuning``."""
        case = self._transition(case_id, "false_positive", actor, now, note)
        if tune:
            records = self._record_tuning(case, now or datetime.now(UTC))
            for rec in records:
                for hook in self.tuning_hooks:
                    hook(rec)
        return case

    def close(
        self, case_id: str, *, actor: str, now: datetime | None = None, note: str = ""
    ) -> Case:
        return self._transition(case_id, "close", actor, now, note)

    def _transition(
        self, case_id: str, verb: str, actor: str, now: datetime | None, note: str
    ) -> Case:
        now = _aware(now)
        sources, target = TRANSITIONS[verb]
        with self.engine.begin() as conn:
            case = self._load(conn, self.resolve_id(case_id, conn))
            if case.status not in sources:
                raise CaseError(
                    f"case {case.id} is {case.status}; '{verb}' needs one of "
                    f"{', '.join(s for s in STATUSES if s in sources)}",
                    _hint(case.status),
                )
            values: dict[str, Any] = {"status": target, "updated_at": now}
            if case.acknowledged_at is None:
                values["acknowledged_at"] = now  # any analyst decision acknowledges
            if target in {"confirmed_fraud", "false_positive"}:
                values["verdict_at"] = now
            if target == "closed":
                values["closed_at"] = now
            conn.execute(cases_t.update().where(cases_t.c.id == case.id).values(**values))
            text = f"{case.status} -> {target}" + (f": {note}" if note else "")
            self._event(conn, case.id, now, verb, actor, text, {"from": case.status, "to": target})
            audit.append(
                conn,
                actor=actor,
                action=f"case.{verb}",
                subject=case.id,
                data={"from": case.status, "to": target, "note": note},
                at=now,
            )
            return self._load(conn, case.id)

    def comment(self, case_id: str, text: str, *, actor: str, now: datetime | None = None) -> Case:
        if not text.strip():
            raise CaseError("empty comment", "write what you found or did")
        now = _aware(now)
        with self.engine.begin() as conn:
            cid = self.resolve_id(case_id, conn)
            self._event(conn, cid, now, "comment", actor, text, {})
            conn.execute(cases_t.update().where(cases_t.c.id == cid).values(updated_at=now))
            audit.append(
                conn, actor=actor, action="case.comment", subject=cid, data={"text": text}, at=now
            )
            return self._load(conn, cid)

    def assign(
        self, case_id: str, assignee: str, *, actor: str, now: datetime | None = None
    ) -> Case:
        now = _aware(now)
        with self.engine.begin() as conn:
            cid = self.resolve_id(case_id, conn)
            old = conn.execute(select(cases_t.c.assignee).where(cases_t.c.id == cid)).one()
            conn.execute(
                cases_t.update()
                .where(cases_t.c.id == cid)
                .values(assignee=assignee or None, updated_at=now)
            )
            self._event(
                conn,
                cid,
                now,
                "assigned",
                actor,
                f"assigned to {assignee or 'nobody'}",
                {"from": old.assignee, "to": assignee or None},
            )
            audit.append(
                conn,
                actor=actor,
                action="case.assign",
                subject=cid,
                data={"from": old.assignee, "to": assignee or None},
                at=now,
            )
            return self._load(conn, cid)

    def action(
        self,
        case_id: str,
        action: str,
        *,
        actor: str,
        now: datetime | None = None,
        note: str = "",
        data: dict[str, Any] | None = None,
    ) -> Case:
        """Record an action taken on the case: block, unblock, hold_payout, release_payout,
        other. ``block`` sets the case's block timer (first block only) and, in the live
        service, calls the blocker."""
        if action not in ACTIONS:
            raise CaseError(f"unknown action {action!r}", f"use one of {', '.join(ACTIONS)}")
        now = _aware(now)
        with self.engine.begin() as conn:
            case = self._load(conn, self.resolve_id(case_id, conn))
            values: dict[str, Any] = {"updated_at": now}
            if action == "block" and case.blocked_at is None:
                values["blocked_at"] = now
            conn.execute(cases_t.update().where(cases_t.c.id == case.id).values(**values))
            payload = {"action": action, "account": case.account, **(data or {})}
            text = action.replace("_", " ") + (f": {note}" if note else "")
            self._event(conn, case.id, now, "action", actor, text, payload)
            audit.append(
                conn,
                actor=actor,
                action=action,
                subject=case.id,
                data={**payload, "note": note},
                at=now,
            )
        if self.blocker is not None and action in {"block", "unblock"}:
            reason = f"case {case.id}" + (f": {note}" if note else "")
            if action == "block":
                self.blocker.block(case.account, reason, now)
            else:
                self.blocker.unblock(case.account, reason, now)
        return self.get(case.id)

    # -- tuning from false positives ----------------------------------------------
    def _record_tuning(self, case: Case, now: datetime) -> list[TuningRecord]:
        out: list[TuningRecord] = []
        with self.engine.begin() as conn:
            rows = conn.execute(select(alerts_t).where(alerts_t.c.case_id == case.id)).all()
            for row in rows:
                for option, value in _tuning_values(row):
                    rec = TuningRecord(row.account, row.detector, option, value, case.id)
                    exists = conn.execute(
                        select(case_tuning.c.id).where(
                            and_(
                                case_tuning.c.account == rec.account,
                                case_tuning.c.detector == rec.detector,
                                case_tuning.c.option == rec.option,
                                case_tuning.c.value == rec.value,
                            )
                        )
                    ).first()
                    if exists:
                        continue
                    conn.execute(
                        case_tuning.insert().values(
                            account=rec.account,
                            detector=rec.detector,
                            option=rec.option,
                            value=rec.value,
                            case_id=case.id,
                            created_at=now,
                        )
                    )
                    audit.append(
                        conn,
                        actor=ENGINE_ACTOR,
                        action="tuning",
                        subject=case.id,
                        data={
                            "account": rec.account,
                            "detector": rec.detector,
                            rec.option: rec.value,
                        },
                        at=now,
                    )
                    out.append(rec)
        return out

    def tuning(self, account: str | None = None) -> list[TuningRecord]:
        query = select(case_tuning).order_by(
            case_tuning.c.account, case_tuning.c.detector, case_tuning.c.option, case_tuning.c.id
        )
        if account:
            query = query.where(case_tuning.c.account == account)
        with self.engine.connect() as conn:
            return [
                TuningRecord(r.account, r.detector, r.option, r.value, r.case_id)
                for r in conn.execute(query)
            ]

    def tuning_toml(self, account: str | None = None) -> str:
        return tuning_toml(self.tuning(account))

    # -- reading ------------------------------------------------------------------------
    def resolve_id(self, case_id: str, conn: Connection | None = None) -> str:
        """Full id from an id or a unique prefix (like git): 'C-3f9a' -> 'C-3f9a2b1c0d'."""

        def find(c: Connection) -> str:
            exact = c.execute(select(cases_t.c.id).where(cases_t.c.id == case_id)).first()
            if exact:
                return str(exact.id)
            like = case_id if case_id.startswith("C-") else f"C-{case_id}"
            hits = c.execute(
                select(cases_t.c.id).where(cases_t.c.id.startswith(like, autoescape=True)).limit(3)
            ).all()
            if len(hits) == 1:
                return str(hits[0].id)
            if not hits:
                raise CaseNotFound(f"no case {case_id!r}", "`tollguard cases list` shows the ids")
            raise CaseError(f"{case_id!r} matches several cases", "give more characters of the id")

        if conn is not None:
            return find(conn)
        with self.engine.connect() as c:
            return find(c)

    def get(self, case_id: str, *, detail: bool = False) -> Case:
        with self.engine.connect() as conn:
            case = self._load(conn, self.resolve_id(case_id, conn))
            if detail:
                case.events = self._events(conn, case.id)
                case.alerts = [
                    orjson.loads(r.payload)
                    for r in conn.execute(
                        select(alerts_t.c.payload)
                        .where(alerts_t.c.case_id == case.id)
                        .order_by(alerts_t.c.detected_at, alerts_t.c.id)
                    )
                ]
            return case

    def case_alerts(self, case_id: str) -> list[Alert]:
        with self.engine.connect() as conn:
            cid = self.resolve_id(case_id, conn)
            return [
                Alert.from_dict(orjson.loads(r.payload))
                for r in conn.execute(
                    select(alerts_t.c.payload)
                    .where(alerts_t.c.case_id == cid)
                    .order_by(alerts_t.c.detected_at, alerts_t.c.id)
                )
            ]

    def list_cases(
        self,
        *,
        status: Sequence[str] | None = None,
        account: str | None = None,
        assignee: str | None = None,
        severity: str | None = None,
        limit: int = 200,
    ) -> list[Case]:
        query = select(cases_t).order_by(cases_t.c.last_alert_at.desc(), cases_t.c.id)
        if status:
            bad = [s for s in status if s not in (*STATUSES, "open")]
            if bad:
                raise CaseError(f"unknown status {bad}", f"use one of {', '.join(STATUSES)}, open")
            wanted = {s for s in status if s != "open"} | (
                set(OPEN_STATUSES) if "open" in status else set()
            )
            query = query.where(cases_t.c.status.in_(sorted(wanted)))
        if account:
            query = query.where(cases_t.c.account == account)
        if assignee:
            query = query.where(cases_t.c.assignee == assignee)
        if severity:
            query = query.where(cases_t.c.severity == severity)
        with self.engine.connect() as conn:
            return [_case(r) for r in conn.execute(query.limit(limit))]

    def _load(self, conn: Connection, case_id: str) -> Case:
        row = conn.execute(select(cases_t).where(cases_t.c.id == case_id)).first()
        if row is None:
            raise CaseNotFound(f"no case {case_id!r}", "`tollguard cases list` shows the ids")
        return _case(row)

    def _events(self, conn: Connection, case_id: str) -> list[CaseEvent]:
        rows = conn.execute(
            select(case_events)
            .where(case_events.c.case_id == case_id)
            .order_by(case_events.c.at, case_events.c.id)
        )
        return [
            CaseEvent(r.id, r.case_id, r.at, r.kind, r.actor, r.text, orjson.loads(r.data))
            for r in rows
        ]

    def _event(
        self,
        conn: Connection,
        case_id: str,
        at: datetime,
        kind: str,
        actor: str,
        text: str,
        data: dict[str, Any],
    ) -> None:
        conn.execute(
            case_events.insert().values(
                case_id=case_id,
                at=at,
                kind=kind,
                actor=actor,
                text=text,
                data=orjson.dumps(data).decode(),
            )
        )

    def add_event(
        self,
        case_id: str,
        kind: str,
        text: str,
        *,
        actor: str = ENGINE_ACTOR,
        at: datetime | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """For collaborators (notifier, payout ledger): add a line to a case's timeline."""
        with self.engine.begin() as conn:
            self._event(conn, case_id, _aware(at), kind, actor, text, data or {})


def _e4(alert: Alert) -> int:
    return int((alert.cost * 10000).to_integral_value())


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise CaseError(f"naive time {now!r}", "give times with a time zone (UTC)")
    return now


def _hint(status: str) -> str:
    return {
        "new": "acknowledge it first (`cases ack`), or give a verdict",
        "acknowledged": "give a verdict: `cases confirm` or `cases false-positive`",
        "confirmed_fraud": "close it with `cases close`",
        "false_positive": "close it with `cases close`",
        "closed": "a closed case reopens by itself if the pattern returns",
    }.get(status, "")


def _case(row: Row[Any]) -> Case:
    return Case(
        id=row.id,
        key=row.key,
        account=row.account,
        subject=row.subject,
        subject_kind=row.subject_kind,
        status=row.status,
        severity=row.severity,
        title=row.title,
        currency=row.currency,
        cost_e4=int(row.cost_e4),
        records=int(row.records),
        alert_count=int(row.alert_count),
        first_record_at=row.first_record_at,
        first_alert_at=row.first_alert_at,
        last_alert_at=row.last_alert_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        assignee=row.assignee,
        first_notified_at=row.first_notified_at,
        acknowledged_at=row.acknowledged_at,
        blocked_at=row.blocked_at,
        verdict_at=row.verdict_at,
        closed_at=row.closed_at,
        escalated_at=row.escalated_at,
        reopened=int(row.reopened),
    )


_KIND_OPTION = {
    "country": "known_countries",
    "number": "known_numbers",
    "prefix": "known_prefixes",
    "number_type": "known_number_types",
}


def _tuning_values(row: Row[Any]) -> list[tuple[str, str]]:
    """What a false positive teaches: the alert's subject (country, number, prefix,
    number type) becomes known for the account, plus a country named in the explanation."""
    out: list[tuple[str, str]] = []
    option = _KIND_OPTION.get(row.subject_kind)
    if option:
        out.append((option, row.subject))
    payload = orjson.loads(row.payload)
    explanation = payload.get("explanation") or {}
    country = explanation.get("country")
    if isinstance(country, str) and row.subject_kind != "country":
        out.append(("known_countries", country))
    return out


def tuning_toml(records: Sequence[TuningRecord]) -> str:
    """A policy snippet: ``[accounts."X".detectors.D.options]`` with ``known_*`` lists."""
    grouped: dict[tuple[str, str], dict[str, list[str]]] = {}
    sources: dict[tuple[str, str], set[str]] = {}
    for rec in records:
        opts = grouped.setdefault((rec.account, rec.detector), {})
        values = opts.setdefault(rec.option, [])
        if rec.value not in values:
            values.append(rec.value)
        sources.setdefault((rec.account, rec.detector), set()).add(rec.case_id)
    lines = ["# Generated by tollguard from cases marked false positive."]
    for (account, detector), opts in sorted(grouped.items()):
        lines.append("")
        lines.append(f"# from case(s) {', '.join(sorted(sources[(account, detector)]))}")
        lines.append(f"[accounts.{_toml_key(account)}.detectors.{_toml_key(detector)}.options]")
        for option, values in sorted(opts.items()):
            quoted = ", ".join(_toml_str(v) for v in sorted(values))
            lines.append(f"{option} = [{quoted}]")
    return "\n".join(lines) + "\n"


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(value: str) -> str:
    if value and all(c.isalnum() or c in "-_" for c in value):
        return value
    return _toml_str(value)
