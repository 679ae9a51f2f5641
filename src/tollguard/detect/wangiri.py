"""wangiri: one-ring call floods, and the callbacks they bait.

Ring flood: per account, over a sliding ``options.window_minutes`` (10), the number of
distinct destinations reached by very short unanswered calls (not answered, or answered
for at most ``options.max_answered_s`` 2 s, lasting at most ``options.max_ring_s`` 8 s).
Only calls from foreign numbers count (``options.foreign_sources_only``: the caller is
an E.164 number outside the account's dialing country); a PBX's own short failed
calls are ``sequential``'s business. It alerts when they are many *and* most of the
account's calls in the window (``options.min_share`` 0.6): warning ``destinations`` 20,
critical ``destinations`` 60.
Subject: the account (usually an interconnect or wholesale trunk); the explanation
names the calling numbers. A ring flood does not block the trunk (block scope "none").

Callbacks: the calling numbers of a flood (capped at ``options.max_sources`` 10,000,
kept ``options.callback_days`` 7 days) are remembered; a later call *to* one of them is
a callback, paid by the victim. Warning at ``callbacks`` 1, critical at ``callbacks`` 3
(per number), and enforcement then blocks calls to that number.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import Severity
from tollguard.detect.base import (
    AccountContext,
    BaseDetector,
    Finding,
    Settings,
    Tally,
    money,
    thresholds,
)


@dataclass(slots=True)
class _Flood:
    events: deque[tuple[float, str | None]] = field(default_factory=deque)  # (t, short dest)
    dests: dict[str, int] = field(default_factory=dict)  # short destinations in window
    short: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    tally: Tally | None = None
    severity: Severity | None = None
    peak: int = 0


@dataclass(slots=True)
class _Source:
    flagged_at: float
    account: str
    tally: Tally | None = None
    severity: Severity | None = None


class WangiriDetector(BaseDetector):
    name = "wangiri"
    default_warning: ClassVar[dict[str, float]] = {"destinations": 20, "callbacks": 1}
    default_critical: ClassVar[dict[str, float]] = {"destinations": 60, "callbacks": 3}
    default_options: ClassVar[dict[str, Any]] = {
        "window_minutes": 10,
        "max_ring_s": 8,
        "max_answered_s": 2,
        "min_share": 0.6,
        "max_sources": 10_000,
        "callback_days": 7,
        "foreign_sources_only": True,
        "known_numbers": [],
    }

    def __init__(self) -> None:
        self._sources: OrderedDict[str, _Source] = OrderedDict()

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        settings = ctx.cur if ctx.cur is not None else ctx.settings(self)
        out: list[Finding] = []
        callback = self._callback(record, ctx, settings)
        if callback is not None:
            out.append(callback)
        flood = self._flood(record, ctx, settings)
        if flood is not None:
            out.append(flood)
        return out

    # -- ring floods --------------------------------------------------------
    def _flood(
        self,
        record: CallRecord,
        ctx: AccountContext,
        settings: Settings,
    ) -> Finding | None:
        warning, critical, opts = settings.warning, settings.critical, settings.options
        st: _Flood | None = ctx.state.get(self.name)
        if st is None:
            st = ctx.state[self.name] = _Flood()
        now = ctx.end_ts
        src = record.caller_e164 or record.caller
        short = (
            record.duration <= opts["max_ring_s"]
            and (not record.answered or record.billsec <= opts["max_answered_s"])
            and (not opts["foreign_sources_only"] or _foreign(src, ctx))
        )
        dest = (record.callee_e164 or record.callee) if short else None
        events = st.events
        events.append((now, dest))
        if dest is not None:
            st.dests[dest] = st.dests.get(dest, 0) + 1
            st.short += 1
        horizon = now - 60.0 * float(opts["window_minutes"])
        while events[0][0] < horizon:  # the new event is never older than the horizon
            _, old = events.popleft()
            if old is not None:
                st.short -= 1
                n = st.dests[old] - 1
                if n:
                    st.dests[old] = n
                else:
                    del st.dests[old]
        if not st.short and st.tally is None and warning["destinations"] > 0:
            return None  # no one-ring call in the window and no episode open
        distinct = len(st.dests)
        share = st.short / len(st.events)
        hot = distinct >= warning["destinations"] and share >= float(opts["min_share"])
        if not hot and st.tally is None:
            return None
        if (
            not hot
            and st.tally is not None
            and (now - st.tally.last_ts > 60.0 * float(opts["window_minutes"]))
        ):
            st.tally, st.severity, st.sources, st.peak = None, None, {}, 0
            return None
        if st.tally is None:
            st.tally = Tally(record.start)
        if short:
            st.tally.add(record, ctx)
            if src in st.sources or len(st.sources) < 64:
                st.sources[src] = st.sources.get(src, 0) + 1
            self._remember(src, now, ctx.account, opts)
        st.peak = max(st.peak, distinct)
        sev: Severity | None = None
        if hot and distinct >= critical["destinations"]:
            sev = "critical"
        elif hot:
            sev = "warning"
        if sev == "critical" or (sev == "warning" and st.severity is None):
            st.severity = sev
        if st.severity is None or not short:
            return None
        top = sorted(st.sources.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        why = (
            f"{st.peak} different numbers got a one-ring call within "
            f"{opts['window_minutes']} min ({st.tally.calls} short unanswered calls so far, "
            f"{share:.0%} of this account's calls) from {', '.join(s for s, _ in top)}: "
            "Wangiri; victims who call back pay premium rates"
        )
        return Finding(
            subject=ctx.account,
            subject_kind="account",
            severity=st.severity,
            started_at=st.tally.started_at,
            records=st.tally.calls,
            cost=st.tally.cost,
            prior_ids=st.tally.prior(),
            block="none",
            explanation={
                "parameter": "one_ring_destinations",
                "value": st.peak,
                "threshold": thresholds(settings, "destinations"),
                "sources": [s for s, _ in top],
                "why": why,
            },
        )

    def _remember(self, src: str, now: float, account: str, opts: dict[str, Any]) -> None:
        if not src.startswith("+"):
            return
        known = self._sources.get(src)
        if known is None:
            self._sources[src] = _Source(now, account)
            if len(self._sources) > int(opts["max_sources"]):
                self._sources.popitem(last=False)
        else:
            known.flagged_at = now
            self._sources.move_to_end(src)

    # -- callbacks ----------------------------------------------------------
    def _callback(
        self,
        record: CallRecord,
        ctx: AccountContext,
        settings: Settings,
    ) -> Finding | None:
        warning, critical, opts = settings.warning, settings.critical, settings.options
        if not self._sources:
            return None
        number = record.callee_e164
        if number is None:
            return None
        src = self._sources.get(number)
        if src is None:
            return None
        if number in opts["known_numbers"]:
            return None  # a tuning record: calls to this number are known for this account
        now = ctx.end_ts
        if now - src.flagged_at > 86400.0 * float(opts["callback_days"]):
            del self._sources[number]
            return None
        if src.tally is None:
            src.tally = Tally(record.start)
        src.tally.add(record, ctx)
        n = src.tally.calls
        sev: Severity | None = None
        if n >= critical["callbacks"]:
            sev = "critical"
        elif n >= warning["callbacks"]:
            sev = "warning"
        if sev == "critical" or (sev == "warning" and src.severity is None):
            src.severity = sev
        if src.severity is None:
            return None
        cur = ctx.policy.currency
        why = (
            f"{n} call(s) to {number}, a number that sent one-ring calls "
            f"(Wangiri, via {src.account}); callbacks cost {cur} {money(src.tally.cost)} so far"
        )
        return Finding(
            subject=number,
            subject_kind="number",
            severity=src.severity,
            started_at=src.tally.started_at,
            records=n,
            cost=src.tally.cost,
            prior_ids=src.tally.prior(),
            block="number",
            global_scope=True,
            explanation={
                "parameter": "wangiri_callbacks",
                "value": n,
                "threshold": thresholds(settings, "callbacks"),
                "why": why,
            },
        )


_HOME_CODES: dict[str, str] = {}


def _foreign(src: str, ctx: AccountContext) -> bool:
    """Is the calling number an E.164 number outside the account's dialing country?"""
    if not src.startswith("+"):
        return False
    home = ctx.policy.context.country
    code = _HOME_CODES.get(home)
    if code is None:
        import phonenumbers

        n = phonenumbers.country_code_for_region(home)
        code = _HOME_CODES[home] = f"+{n}" if n else "+"
    return not src.startswith(code)
