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
call path; see ``is_refused`` and docs/detection.md. Blocks are scoped by what the alert
is about: a destination for the account, the account, or a number / range for everyone;
a terminating account (``traffic = "terminating"``) gets at most warnings from the
account-level detectors and is never blocked as a whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import EVIDENCE_CAP, Alert, Evidence
from tollguard.detect.base import (
    ACCOUNT_LEVEL,
    NO_TIME,
    SPECIAL_TYPES,
    AccountContext,
    BaseDetector,
    Detector,
    Finding,
    ForeignDetector,
    Settings,
    dec,
)
from tollguard.detect.books import Books, EnforcementSummary
from tollguard.detect.clock import ZoneOffsets
from tollguard.detect.population import Population
from tollguard.detect.priors_file import policy_priors
from tollguard.detect.signature import EPOCH_SLOT_OFFSET, HOURS_PER_WEEK, Priors, Signature
from tollguard.policy import Policy


@dataclass(slots=True)
class _Open:
    alert: Alert
    last: float  # epoch seconds of the last record of the situation


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


def _only_special(det: Detector, settings: Settings) -> bool:
    """Does this detector (with these settings) only look at calls abroad, to high-risk
    ranges or to special number types? Then the engine skips it for other calls."""
    name = det.name
    opts = settings.options
    if name == "destination":
        return True
    if name == "sequential":
        return bool(opts.get("scope") == "international")
    if name == "pumping":
        types = {str(t).upper() for t in opts.get("number_types", ())}
        return types <= SPECIAL_TYPES
    return False


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
        learn_population: bool = True,
    ) -> None:
        self.policy = policy
        self.enforce = enforce
        # explicit priors, else the policy's calibrated ones, else the built-in defaults
        self.priors = priors or policy_priors(policy) or Priors.default()
        self.detectors: list[Detector] = (
            list(detectors) if detectors is not None else (default_detectors())
        )
        self.alert_gap = alert_gap
        self._gap_s = alert_gap.total_seconds()
        self.alerts: list[Alert] = []
        self.population: Population | None = (
            Population(self.priors.half_life_days) if learn_population else None
        )
        self._accounts: dict[str, AccountContext] = {}
        self._open: dict[tuple[str, str, str, str], _Open] = {}
        self._books: dict[str, Books] = {}
        self._offsets: dict[str, ZoneOffsets] = {}
        self._blocked_accounts: dict[str, tuple[float, datetime, str]] = {}
        self._blocked_numbers: dict[str, tuple[float, datetime]] = {}
        self._blocked_prefixes: dict[str, tuple[float, datetime]] = {}
        self._any_block = False
        self._seen = 0
        from tollguard.detect.limits import LimitsDetector

        self._limits: LimitsDetector | None = next(
            (d for d in self.detectors if isinstance(d, LimitsDetector)), None
        )

    # -- accounts and time --------------------------------------------------
    def _new_context(self, account: str) -> AccountContext:
        resolved = self.policy.account(account)
        ctx = AccountContext(account, resolved, Signature(self.priors))
        zone = self._offsets.get(resolved.timezone)
        if zone is None:
            zone = self._offsets[resolved.timezone] = ctx.zone
        ctx.zone = zone  # one offset cache per zone, shared by its accounts
        ctx.population = self.population
        return ctx

    def context(self, account: str) -> AccountContext:
        ctx = self._accounts.get(account)
        if ctx is None:
            ctx = self._accounts[account] = self._new_context(account)
            self._books[account] = ctx.books
            active: list[tuple[BaseDetector, bool, Settings, bool]] = []
            for det in self.detectors:
                settings = ctx.settings(det)
                if settings.enabled:
                    cap = ctx.terminating and det.name in ACCOUNT_LEVEL
                    native = det if isinstance(det, BaseDetector) else ForeignDetector(det)
                    active.append((native, cap, settings, _only_special(det, settings)))
            ctx.active = active
        return ctx

    # -- enforcement --------------------------------------------------------
    def _block_reason(
        self, record: CallRecord, ctx: AccountContext | None, start: float
    ) -> str | None:
        blocked = self._blocked_accounts.get(record.account)
        if blocked is not None and start >= blocked[0]:
            return f"account blocked since {blocked[1].isoformat()} (alert {blocked[2]})"
        if ctx is not None and ctx.books.dest_blocks:
            for key in (f"country:{record.country}", f"number_type:{record.number_type}"):
                at = ctx.books.dest_blocks.get(key)
                if at is not None and start >= at[0]:
                    what = key.replace(":", " ")
                    return f"{what} blocked for this account since {at[1].isoformat()}"
        number = record.callee_e164 or record.callee
        hit = self._blocked_numbers.get(number)
        if hit is not None and start >= hit[0]:
            return f"number {number} blocked since {hit[1].isoformat()}"
        if self._blocked_prefixes and len(number) > 3:
            hit = self._blocked_prefixes.get(number[:-2])
            if hit is not None and start >= hit[0]:
                return f"range {number[:-2]} blocked since {hit[1].isoformat()}"
        return None

    def refusal(self, record: CallRecord) -> str | None:
        """Why tollguard in the call path would refuse this call, or None.

        A call is refused when its account was blocked by an earlier critical, not
        report-only alert (or, for the destination it calls, its country or number type
        for this account; for everyone, a pumped or Wangiri number or a dialed range),
        and the call starts at or after that block (calls already in progress are let
        run), or when the call itself breaches a limit: a blocked/not-allowed country or
        number type, a time outside ``allowed_hours``, a spend or call-count limit
        already reached in its period, calls per minute or concurrent calls at the
        limit. Pure: changes no state.
        """
        ctx = self._accounts.get(record.account)
        start = record.start_ts
        reason = self._block_reason(record, ctx, start) if self._any_block else None
        if reason is not None or self._limits is None:
            return reason
        if ctx is None:
            ctx = self._new_context(record.account)
        if not ctx.has_limits:
            return None
        settings = ctx.settings(self._limits)
        if not settings.enabled or settings.report_only:
            return None
        return self._limits.would_refuse(record, ctx, start)

    def is_refused(self, record: CallRecord) -> bool:
        """True if tollguard, in the path, would have refused this call (see ``refusal``)."""
        return self.refusal(record) is not None

    def enforcement(self) -> dict[str, EnforcementSummary]:
        """Per account: when it was blocked, cost incurred and prevented, calls refused.

        With ``enforce=False`` nothing is refused; ``blocked_at`` then says when it
        would have been blocked and ``cost_prevented``/``calls_refused`` count the calls
        after that block that a blocking tollguard would have refused.
        """
        return {
            account: books.summary(account)
            for account, books in self._books.items()
            if books.calls_allowed or books.calls_refused  # not only in a learned history
        }

    def _block(self, alert: Alert, finding: Finding, ctx: AccountContext, at: datetime) -> None:
        scope = finding.block
        if alert.report_only or scope == "none":
            return
        if scope == "account" and ctx.terminating:
            return  # a terminating trunk is never blocked: its numbers and ranges are
        ts = ctx.end_ts
        books = ctx.books
        account = ctx.account
        if scope == "account":
            if account not in self._blocked_accounts:
                self._blocked_accounts[account] = (ts, at, alert.id)
                books.blocked_at = at
                books.blocked_by = alert.id
        elif scope == "destination":
            key = f"{finding.subject_kind}:{finding.subject}"
            if key not in books.dest_blocks:
                books.dest_blocks[key] = (ts, at)
                books.blocked_subjects[key] = at
        elif scope == "number":
            if finding.subject not in self._blocked_numbers:
                self._blocked_numbers[finding.subject] = (ts, at)
                books.blocked_subjects[finding.subject] = at
        elif scope == "prefix" and finding.subject not in self._blocked_prefixes:
            self._blocked_prefixes[finding.subject] = (ts, at)
            books.blocked_subjects[finding.subject] = at
        self._any_block = True

    # -- the record path ----------------------------------------------------
    def process(self, record: CallRecord) -> list[Alert]:
        """Feed one record; returns the alerts that are new or escalated by it.

        With ``enforce=True`` a call tollguard would have refused is counted in
        ``enforcement()`` and not passed to the detectors (the call never happened),
        except that a limit refusal is still reported by the limits detector.
        """
        ctx = self._accounts.get(record.account)
        if ctx is None:
            ctx = self.context(record.account)
        end_ts = record.end_ts
        start_ts = record.start_ts
        cost_e4 = record.cost_e4 or 0
        # the account's clock (local hours and days since the epoch, hour of week)
        off = ctx.zone.at(end_ts)
        hour_index = int((end_ts + off) // 3600)
        if hour_index >= ctx.hour_index or ctx.now_ts == NO_TIME:
            ctx.now_ts = end_ts
            if hour_index != ctx.hour_index:
                day_index = hour_index // 24
                ctx.hour_index = hour_index
                ctx.day_index = day_index
                ctx.slot = (hour_index + EPOCH_SLOT_OFFSET) % HOURS_PER_WEEK
                ctx.sig.advance(hour_index, day_index)
        elif end_ts > ctx.now_ts:  # a late record (out of order): keep the clock
            ctx.now_ts = end_ts
        ctx.start_ts = start_ts
        ctx.end_ts = end_ts
        ctx.cost_e4 = cost_e4
        ctx.offset = off
        books = ctx.books
        self._seen += 1
        if self._seen % self.PRUNE_EVERY == 0:
            self._prune(end_ts)
        if self.enforce:
            if self._any_block and self._block_reason(record, ctx, start_ts) is not None:
                books.calls_refused += 1
                books.prevented_e4 += cost_e4
                return []
            limits = self._limits
            if limits is not None and ctx.has_limits:
                settings = ctx.settings(limits)
                if settings.enabled and not settings.report_only:
                    why = limits.would_refuse(record, ctx, start_ts)
                    if why is not None:
                        books.calls_refused += 1
                        books.prevented_e4 += cost_e4
                        findings = limits.refused(record, ctx, why)
                        return self._apply(findings, ctx, record, limits, False)
        elif self._any_block and self._block_reason(record, ctx, start_ts) is not None:
            books.calls_refused += 1
            books.prevented_e4 += cost_e4
        books.calls_allowed += 1
        books.incurred_e4 += cost_e4

        ctx.next_record_peak()  # exact only when a detector or the learning below needs it
        out: list[Alert] = []
        critical = False
        special: bool | None = None
        for det, cap, settings, only_special in ctx.active:
            if only_special:
                if special is None:
                    country = record.country
                    special = bool(
                        (country and country != ctx.home)
                        or record.risk
                        or record.number_type in SPECIAL_TYPES
                    )
                if not special:
                    continue  # a domestic ordinary call: nothing for this detector
            ctx.cur = settings
            findings = det.observe(record, ctx)
            if findings:
                if not critical:
                    for f in findings:
                        if f.severity == "critical" and not cap:
                            critical = True
                alerts = self._apply(findings, ctx, record, det, cap)
                if alerts:
                    out.extend(alerts)
        ctx.cur = None
        clean = ctx.clean = not critical
        sig = ctx.sig
        sig.count(record, clean)
        if clean and ctx.peak_bound > sig.day_peak and ctx.peak > sig.day_peak:
            sig.day_peak = ctx.peak
        ctx.overlap.add(start_ts, end_ts)
        if clean and self.population is not None:
            self.population.observe(record, ctx)
        return out

    def finish(self) -> list[Alert]:
        """End of input: let detectors report what they only know at the end."""
        out: list[Alert] = []
        for det in self.detectors:
            for finding, ctx in det.finish():
                cap = ctx.terminating and det.name in ACCOUNT_LEVEL
                out.extend(self._apply([finding], ctx, None, det, cap))
        return out

    def _apply(
        self,
        findings: list[Finding],
        ctx: AccountContext,
        record: CallRecord | None,
        det: Detector,
        cap: bool,
    ) -> list[Alert]:
        out: list[Alert] = []
        now = record.end if record is not None else ctx.now
        now_ts = ctx.end_ts
        name = det.name
        for f in findings:
            f.detector = name
            if cap and f.severity == "critical":
                # a terminating account's volume is not its own choice: at most a warning
                f.severity = "warning"
                f.explanation = {
                    **f.explanation,
                    "capped": "terminating account: account-level findings are warnings",
                }
            scope = "" if f.global_scope else ctx.account
            key = (name, scope, f.subject, f.situation)
            op = self._open.get(key)
            if op is not None and now_ts - op.last > self._gap_s:
                del self._open[key]
                op = None
            if op is None:
                if f.severity is None:
                    continue
                first = f.prior_ids[0] if f.prior_ids else (record.record_id if record else "")
                ids = list(f.prior_ids[:EVIDENCE_CAP])
                alert = Alert(
                    id=alert_id(name, scope, f.subject, f.situation, first),
                    detector=name,
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
                self._open[key] = _Open(alert, now_ts)
                out.append(_snapshot(alert))
                if f.severity == "critical" and record is not None:
                    self._block(alert, f, ctx, now)
                continue
            alert = op.alert
            op.last = now_ts
            if record is not None:
                alert.records += 1
                if ctx.cost_e4:
                    alert.cost += dec(ctx.cost_e4)
                alert.evidence.add(record.record_id)
            if f.severity is not None:
                alert.explanation = f.explanation
            if f.severity == "critical" and alert.severity == "warning":
                alert.severity = "critical"
                alert.escalated_at = now
                out.append(_snapshot(alert))
                if record is not None:
                    self._block(alert, f, ctx, now)
        return out

    def _prune(self, now_ts: float) -> None:
        stale = [k for k, op in self._open.items() if now_ts - op.last > self._gap_s]
        for k in stale:
            del self._open[k]

    def start_reporting(self) -> None:
        """History learned (``scan --history``): from now on report afresh. Signatures,
        the population and the detectors' windows and counters stay, as a tollguard
        that had been running would have them; the alerts so far, their open situations,
        the blocks they caused and the enforcement counts are forgotten, so a situation
        still going on at this point is a new alert."""
        self.alerts = []
        self._open.clear()
        self._blocked_accounts.clear()
        self._blocked_numbers.clear()
        self._blocked_prefixes.clear()
        self._any_block = False
        for account, ctx in self._accounts.items():
            ctx.books = self._books[account] = Books()

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
