"""The detection engine: records in, deduplicated escalating alerts out, in event time.

``Engine.process(record)`` runs every enabled detector over one call record and turns
their findings into alerts:

* one alert per situation (detector, account, subject, situation), updated while the
  pattern keeps growing (records, cost, capped evidence); a situation that has been
  quiet for ``alert_gap`` (12 h) is closed and a new one gets a new alert;
* an alert is returned when it is new or when it escalates from warning to critical
  (same id, ``escalated_at`` set); later growth only updates ``engine.alerts``;
* alert ids are a hash of detector, account, subject, situation and the first record
  of the pattern, so replaying the same records gives the same alerts, byte for byte.

Time is the records' time only (``record.end``: a CDR is written when the call ends),
never the wall clock. Enforcement replay (``enforce=True``) models tollguard in the
call path; see ``is_refused`` and docs/detection.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import EVIDENCE_CAP, Alert, Evidence
from tollguard.detect.base import ZERO, AccountContext, Detector, Finding, cost_of
from tollguard.detect.signature import Priors, Signature, slot_of
from tollguard.policy import Policy


@dataclass(slots=True)
class EnforcementSummary:
    """What enforcement did (or, with ``enforce=False``, would have done) for one account."""

    account: str
    blocked_at: datetime | None = None  # the account was blocked from this event time on
    blocked_by: str | None = None  # id of the alert that blocked it
    cost_incurred: Decimal = ZERO  # cost of the calls that went through
    cost_prevented: Decimal = ZERO  # cost of the calls refused
    calls_refused: int = 0
    calls_allowed: int = 0
    blocked_subjects: dict[str, datetime] = field(default_factory=dict)  # numbers/prefixes

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


@dataclass(slots=True)
class _Open:
    alert: Alert
    last: datetime


def default_detectors() -> list[Detector]:
    """One instance of every built-in detector, in evaluation order."""
    from tollguard.detect.concurrency import ConcurrencyDetector
    from tollguard.detect.destination import DestinationDetector
    from tollguard.detect.deviation import DeviationDetector
    from tollguard.detect.limits import LimitsDetector
    from tollguard.detect.pumping import PumpingDetector
    from tollguard.detect.sequential import SequentialDetector
    from tollguard.detect.unusual_hours import UnusualHoursDetector
    from tollguard.detect.wangiri import WangiriDetector

    return [
        LimitsDetector(),
        DestinationDetector(),
        UnusualHoursDetector(),
        DeviationDetector(),
        ConcurrencyDetector(),
        PumpingDetector(),
        SequentialDetector(),
        WangiriDetector(),
    ]


def alert_id(detector: str, account: str, subject: str, situation: str, first: str) -> str:
    raw = "\x1f".join((detector, account, subject, situation, first)).encode()
    return hashlib.sha1(raw).hexdigest()[:20]


class Engine:
    """Runs the detectors over records in event-time order. See the module docstring."""

    PRUNE_EVERY = 20_000

    def __init__(
        self,
        policy: Policy,
        *,
        enforce: bool = False,
        priors: Priors | None = None,
        detectors: Sequence[Detector] | None = None,
        alert_gap: timedelta = timedelta(hours=12),
    ) -> None:
        self.policy = policy
        self.enforce = enforce
        self.priors = priors or Priors.default()
        self.detectors: list[Detector] = (
            list(detectors) if detectors is not None else (default_detectors())
        )
        self.alert_gap = alert_gap
        self.alerts: list[Alert] = []
        self._accounts: dict[str, AccountContext] = {}
        self._open: dict[tuple[str, str, str, str], _Open] = {}
        self._summary: dict[str, EnforcementSummary] = {}
        self._blocked_accounts: dict[str, tuple[datetime, str]] = {}
        self._blocked_numbers: dict[str, datetime] = {}
        self._blocked_prefixes: dict[str, datetime] = {}
        self._seen = 0
        from tollguard.detect.limits import LimitsDetector

        self._limits: LimitsDetector | None = next(
            (d for d in self.detectors if isinstance(d, LimitsDetector)), None
        )

    # -- accounts and time --------------------------------------------------
    def context(self, account: str) -> AccountContext:
        ctx = self._accounts.get(account)
        if ctx is None:
            ctx = AccountContext(account, self.policy.account(account), Signature(self.priors))
            self._accounts[account] = ctx
        return ctx

    @staticmethod
    def _clock(ctx: AccountContext, record: CallRecord) -> None:
        local = record.end.astimezone(ctx.tz)
        off = local.utcoffset()
        secs = record.end.timestamp() + (off.total_seconds() if off else 0.0)
        hour_index = int(secs // 3600)
        day_index = int(secs // 86400)
        if hour_index >= ctx.hour_index or ctx.now == datetime.min:
            ctx.now = record.end
            ctx.local = local
            ctx.hour_index = hour_index
            ctx.day_index = day_index
            ctx.slot = slot_of(hour_index)
            ctx.sig.advance(hour_index, day_index)
        else:  # a late record (out of order): keep the clock, only note its time
            ctx.now = max(ctx.now, record.end)
            ctx.local = local

    def _summary_for(self, account: str) -> EnforcementSummary:
        s = self._summary.get(account)
        if s is None:
            s = self._summary[account] = EnforcementSummary(account)
        return s

    # -- enforcement --------------------------------------------------------
    def _block_reason(self, record: CallRecord) -> str | None:
        blocked = self._blocked_accounts.get(record.account)
        if blocked is not None and record.start >= blocked[0]:
            return f"account blocked since {blocked[0].isoformat()} (alert {blocked[1]})"
        number = record.callee_e164 or record.callee
        at = self._blocked_numbers.get(number)
        if at is not None and record.start >= at:
            return f"number {number} blocked since {at.isoformat()}"
        if self._blocked_prefixes and len(number) > 3:
            at = self._blocked_prefixes.get(number[:-2])
            if at is not None and record.start >= at:
                return f"range {number[:-2]} blocked since {at.isoformat()}"
        return None

    def refusal(self, record: CallRecord) -> str | None:
        """Why tollguard in the call path would refuse this call, or None.

        A call is refused when its account (or, after pumping, its B-number or range)
        was blocked by an earlier critical, not report-only alert and the call starts
        at or after that block (calls already in progress are let run), or when the
        call itself breaches a limit: a blocked/not-allowed country or number type, a
        time outside ``allowed_hours``, a spend or call-count limit already reached in
        its period, calls per minute or concurrent calls at the limit. Pure: changes
        no state.
        """
        reason = self._block_reason(record)
        if reason is not None or self._limits is None:
            return reason
        ctx = self._accounts.get(record.account)
        if ctx is None:
            ctx = AccountContext(
                record.account, self.policy.account(record.account), Signature(self.priors)
            )
        settings = ctx.settings(self._limits)
        if not settings.enabled or settings.report_only:
            return None
        return self._limits.would_refuse(record, ctx)

    def is_refused(self, record: CallRecord) -> bool:
        """True if tollguard, in the path, would have refused this call (see ``refusal``)."""
        return self.refusal(record) is not None

    def enforcement(self) -> dict[str, EnforcementSummary]:
        """Per account: when it was blocked, cost incurred and prevented, calls refused.

        With ``enforce=False`` nothing is refused; ``blocked_at`` then says when it
        would have been blocked and ``cost_prevented``/``calls_refused`` count the calls
        after that block that a blocking tollguard would have refused.
        """
        return dict(self._summary)

    def _block(self, alert: Alert, finding: Finding, record: CallRecord) -> None:
        if alert.report_only or finding.block == "none":
            return
        at = record.end
        summary = self._summary_for(record.account)
        if finding.block == "account":
            if record.account not in self._blocked_accounts:
                self._blocked_accounts[record.account] = (at, alert.id)
                summary.blocked_at = at
                summary.blocked_by = alert.id
        elif finding.block == "number":
            if finding.subject not in self._blocked_numbers:
                self._blocked_numbers[finding.subject] = at
                summary.blocked_subjects[finding.subject] = at
        elif finding.block == "prefix" and finding.subject not in self._blocked_prefixes:
            self._blocked_prefixes[finding.subject] = at
            summary.blocked_subjects[finding.subject] = at

    # -- the record path ----------------------------------------------------
    def process(self, record: CallRecord) -> list[Alert]:
        """Feed one record; returns the alerts that are new or escalated by it.

        With ``enforce=True`` a call tollguard would have refused is counted in
        ``enforcement()`` and not passed to the detectors (the call never happened),
        except that a limit refusal is still reported by the limits detector.
        """
        ctx = self.context(record.account)
        self._clock(ctx, record)
        summary = self._summary_for(record.account)
        cost = cost_of(record)
        self._seen += 1
        if self._seen % self.PRUNE_EVERY == 0:
            self._prune(record.end)
        if self.enforce:
            blocked = self._block_reason(record)
            if blocked is not None:
                summary.calls_refused += 1
                summary.cost_prevented += cost
                return []
            if self._limits is not None:
                settings = ctx.settings(self._limits)
                if settings.enabled and not settings.report_only:
                    why = self._limits.would_refuse(record, ctx)
                    if why is not None:
                        summary.calls_refused += 1
                        summary.cost_prevented += cost
                        findings = self._limits.refused(record, ctx, why)
                        return self._apply(findings, ctx, record, self._limits)
        elif self._block_reason(record) is not None:
            summary.calls_refused += 1
            summary.cost_prevented += cost
        summary.calls_allowed += 1
        summary.cost_incurred += cost

        start_ts = record.start.timestamp()
        end_ts = record.end.timestamp()
        ctx.peak = ctx.overlap.peak_with(start_ts, end_ts)
        out: list[Alert] = []
        critical = False
        for det in self.detectors:
            settings = ctx.settings(det)
            if not settings.enabled:
                continue
            findings = det.observe(record, ctx)
            if findings:
                if any(f.severity == "critical" for f in findings):
                    critical = True
                out.extend(self._apply(findings, ctx, record, det))
        ctx.clean = not critical
        ctx.sig.count(record, ctx.clean)
        ctx.sig.note_peak(ctx.peak, ctx.clean)
        ctx.overlap.add(start_ts, end_ts)
        return out

    def finish(self) -> list[Alert]:
        """End of input: let detectors report what they only know at the end."""
        out: list[Alert] = []
        for det in self.detectors:
            for finding, ctx in det.finish():
                out.extend(self._apply([finding], ctx, None, det))
        return out

    def _apply(
        self,
        findings: list[Finding],
        ctx: AccountContext,
        record: CallRecord | None,
        det: Detector,
    ) -> list[Alert]:
        out: list[Alert] = []
        now = record.end if record is not None else ctx.now
        for f in findings:
            f.detector = det.name
            scope = "" if f.global_scope else ctx.account
            key = (det.name, scope, f.subject, f.situation)
            op = self._open.get(key)
            if op is not None and now - op.last > self.alert_gap:
                del self._open[key]
                op = None
            if op is None:
                if f.severity is None:
                    continue
                first = f.prior_ids[0] if f.prior_ids else (record.record_id if record else "")
                ids = list(f.prior_ids[:EVIDENCE_CAP])
                alert = Alert(
                    id=alert_id(det.name, scope, f.subject, f.situation, first),
                    detector=det.name,
                    severity=f.severity,
                    account=ctx.account,
                    subject=f.subject,
                    subject_kind=f.subject_kind,
                    started_at=f.started_at,
                    detected_at=now,
                    records=f.records,
                    cost=f.cost,
                    currency=ctx.policy.currency,
                    explanation=f.explanation,
                    evidence=Evidence(ids, max(f.records, len(ids))),
                    report_only=ctx.settings(det).report_only,
                )
                self.alerts.append(alert)
                self._open[key] = _Open(alert, now)
                out.append(_snapshot(alert))
                if f.severity == "critical" and record is not None:
                    self._block(alert, f, record)
                continue
            alert = op.alert
            op.last = now
            if record is not None:
                alert.records += 1
                alert.cost += cost_of(record)
                alert.evidence.add(record.record_id)
            if f.severity is not None:
                alert.explanation = f.explanation
            if f.severity == "critical" and alert.severity == "warning":
                alert.severity = "critical"
                alert.escalated_at = now
                out.append(_snapshot(alert))
                if record is not None:
                    self._block(alert, f, record)
        return out

    def _prune(self, now: datetime) -> None:
        stale = [k for k, op in self._open.items() if now - op.last > self.alert_gap]
        for k in stale:
            del self._open[k]

    # -- introspection ------------------------------------------------------
    def signature(self, account: str) -> Signature | None:
        ctx = self._accounts.get(account)
        return ctx.sig if ctx else None

    def accounts(self) -> list[str]:
        return list(self._accounts)


def _snapshot(alert: Alert) -> Alert:
    return replace(
        alert,
        explanation=dict(alert.explanation),
        evidence=Evidence(list(alert.evidence.record_ids), alert.evidence.total),
    )
