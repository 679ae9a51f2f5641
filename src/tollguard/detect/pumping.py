"""pumping: artificially inflated traffic to a premium-rate number or range (terminating side).

State is kept per callee number (and per 100-number range) across all accounts, for
numbers of the types in ``options.number_types`` (premium rate, shared cost, UAN,
personal, satellite) and numbers on the high-risk list. Each number learns its own
call rate (decayed calls per hour, half-life ``options.half_life_days`` 14, starting from
``options.prior_calls_per_day`` 0.2 worth ``options.prior_days`` 7 days), from windows
that did not alert.

Per window (current UTC hour and UTC day) the detector measures:

* volume: Gamma-Poisson tail probability of the call count given the number's own rate;
* distinct callers, and how concentrated they are in number blocks (callers sharing all
  but the last 4 digits: 609 prepaid SIMs bought together);
* durations of answered calls: coefficient of variation (a call generator hanging up at
  11-12 s gives CV ~ 0.05; people give CV ~ 1);
* calls per caller (a generator dials again and again).

A window alerts only with a pumping feature (``max_cv`` 0.25 over >= 10 answered calls,
or >= 10 distinct callers with ``block_share`` >= 0.5 in one block, or >= 5 calls per
caller from >= 3 callers), or with a huge volume alone (``critical.volume_only_calls``
500 gives a warning). Thresholds: warning p_value 1e-4 and min_calls 20; critical p_value
1e-7 and min_calls 50. A normal premium-rate line with its usual handful of calls, or a
busy one with ordinary callers and ordinary call lengths, never alerts.

A range alert (subject "+31909123456" without the last two digits) needs calls to at
least ``options.range_min_numbers`` (3) numbers of the range; a single pumped number
gives one alert on the number. On critical, enforcement blocks the number (or range).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import Severity
from tollguard.detect.base import (
    AccountContext,
    BaseDetector,
    Finding,
    SubjectKind,
    Tally,
    money,
    thresholds,
)
from tollguard.detect.stats import effective_shape, nbinom_sf

SET_CAP = 5000


@dataclass(slots=True)
class _Window:
    index: int
    hours: int
    tally: Tally
    callers: set[str] = field(default_factory=set)
    blocks: dict[str, int] = field(default_factory=dict)
    numbers: set[str] = field(default_factory=set)
    dur_n: int = 0
    dur_s: float = 0.0
    dur_s2: float = 0.0
    p: float = 1.0
    p_at: int = -1
    severity: Severity | None = None
    block_total: int = 0
    top: str = ""
    top_n: int = 0

    def add(self, record: CallRecord, ctx: AccountContext) -> None:
        self.tally.add(record, ctx)
        caller = record.caller_e164 or record.caller
        if len(self.callers) < SET_CAP:
            self.callers.add(caller)
            block = caller[:-4] if len(caller) > 6 else caller
            if block in self.blocks or len(self.blocks) < SET_CAP:
                n = self.blocks[block] = self.blocks.get(block, 0) + 1
                self.block_total += 1
                if n > self.top_n:
                    self.top, self.top_n = block, n
        if len(self.numbers) < 64:
            self.numbers.add(record.callee_e164 or record.callee)
        if record.answered:
            b = float(record.billsec)
            self.dur_n += 1
            self.dur_s += b
            self.dur_s2 += b * b

    def cv(self) -> float:
        if self.dur_n < 2:
            return math.inf
        mean = self.dur_s / self.dur_n
        var = max(self.dur_s2 / self.dur_n - mean * mean, 0.0)
        return math.sqrt(var) / mean if mean > 0 else math.inf

    def top_block(self) -> tuple[str, float]:
        return self.top, self.top_n / max(self.block_total, 1)


@dataclass(slots=True)
class _Subject:
    subject: str
    kind: SubjectKind
    calls: float  # decayed calls of past (non-alerting) windows
    exposure: float  # decayed hours of history
    last_ts: float
    hour: _Window | None = None
    day: _Window | None = None


class PumpingDetector(BaseDetector):
    name = "pumping"
    default_warning: ClassVar[dict[str, float]] = {"p_value": 1e-4, "min_calls": 20}
    default_critical: ClassVar[dict[str, float]] = {
        "p_value": 1e-7,
        "min_calls": 50,
        "volume_only_calls": 500,
    }
    default_options: ClassVar[dict[str, Any]] = {
        "number_types": ["PREMIUM_RATE", "SHARED_COST", "UAN", "PERSONAL_NUMBER", "SATELLITE"],
        "prior_calls_per_day": 0.2,
        "prior_days": 7.0,
        "half_life_days": 14.0,
        "dispersion": 2.0,
        "max_cv": 0.25,
        "block_share": 0.5,
        "calls_per_caller": 5.0,
        "range_min_numbers": 3,
        "max_subjects": 200_000,
        "known_numbers": [],
        "known_prefixes": [],
    }

    def __init__(self) -> None:
        self._subjects: OrderedDict[str, _Subject] = OrderedDict()

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        settings = ctx.cur if ctx.cur is not None else ctx.settings(self)
        prep = settings.prepared
        if prep is None:
            o = settings.options
            prep = settings.prepared = (
                frozenset(str(t).upper() for t in o["number_types"]),
                frozenset(str(n) for n in o["known_numbers"]),
                tuple(str(p) for p in o["known_prefixes"]),
            )
        types, known_numbers, known_prefixes = prep
        if record.number_type not in types:
            return []
        number = record.callee_e164 or record.callee
        if number in known_numbers or (known_prefixes and number.startswith(known_prefixes)):
            return []  # a tuning record: this number (range) is known for this account
        opts = settings.options
        out: list[Finding] = []
        for subject, kind in ((number, "number"), (number[:-2], "prefix")):
            finding = self._observe_subject(record, ctx, subject, kind, opts, settings)  # type: ignore[arg-type]
            if finding is not None:
                out.append(finding)
        return out

    def _state(self, subject: str, kind: SubjectKind, ts: float, opts: dict[str, Any]) -> _Subject:
        st = self._subjects.get(subject)
        if st is None:
            prior_days = float(opts["prior_days"])
            st = _Subject(
                subject,
                kind,
                float(opts["prior_calls_per_day"]) * prior_days,
                prior_days * 24.0,
                ts,
            )
            self._subjects[subject] = st
            if len(self._subjects) > int(opts["max_subjects"]):
                self._subjects.popitem(last=False)
        else:
            self._subjects.move_to_end(subject)
        return st

    def _observe_subject(
        self,
        record: CallRecord,
        ctx: AccountContext,
        subject: str,
        kind: SubjectKind,
        opts: dict[str, Any],
        settings: Any,
    ) -> Finding | None:
        ts = ctx.end_ts
        st = self._state(subject, kind, ts, opts)
        hour_index = int(ts // 3600)
        day_index = int(ts // 86400)
        tau = float(opts["half_life_days"]) * 24.0 / math.log(2)
        for attr, index, hours in (("hour", hour_index, 1), ("day", day_index, 24)):
            w: _Window | None = getattr(st, attr)
            if w is None or index > w.index:
                if w is not None and attr == "hour":
                    self._learn(st, w, ts, tau)
                setattr(st, attr, _Window(index, hours, Tally(record.start)))
        best: _Window | None = None
        for w in (st.hour, st.day):
            assert w is not None
            w.add(record, ctx)
            sev = self._evaluate(st, w, opts, settings.warning, settings.critical, kind)
            if sev is not None and (best is None or _rank(sev) > _rank(best.severity)):
                best = w
        if best is None:
            return None
        return self._finding(st, best, ctx, record, opts)

    @staticmethod
    def _learn(st: _Subject, w: _Window, ts: float, tau: float) -> None:
        """Close an hour window: decay the history and learn it unless it alerted."""
        hours = max(ts - st.last_ts, 0.0) / 3600.0
        lam = math.exp(-hours / tau)
        st.calls = st.calls * lam + (w.tally.calls if w.severity is None else 0.0)
        st.exposure = st.exposure * lam + tau * (1.0 - lam)
        st.last_ts = ts

    def _evaluate(
        self,
        st: _Subject,
        w: _Window,
        opts: dict[str, Any],
        warning: dict[str, float],
        critical: dict[str, float],
        kind: SubjectKind,
    ) -> Severity | None:
        calls = w.tally.calls
        if w.severity == "critical":
            return w.severity
        if calls < warning["min_calls"] and w.severity is None:
            return None
        if kind == "prefix" and len(w.numbers) < int(opts["range_min_numbers"]):
            return w.severity
        rate = st.calls / max(st.exposure, 1e-9)  # calls per hour
        mu = rate * w.hours
        shape = effective_shape(0.5 + st.calls, float(opts["dispersion"]))
        if w.p_at != calls and w.p > critical["p_value"]:
            w.p = nbinom_sf(calls, shape, max(mu, 1e-9))
            w.p_at = calls
        featured = bool(self._features(w, opts))
        sev: Severity | None = None
        if featured and calls >= critical["min_calls"] and w.p < critical["p_value"]:
            sev = "critical"
        elif (featured and calls >= warning["min_calls"] and w.p < warning["p_value"]) or (
            calls >= critical["volume_only_calls"] and w.p < critical["p_value"]
        ):
            sev = "warning"
        if _rank(sev) > _rank(w.severity):
            w.severity = sev
        return w.severity

    @staticmethod
    def _features(w: _Window, opts: dict[str, Any]) -> list[str]:
        out: list[str] = []
        cv = w.cv()
        if w.dur_n >= 10 and cv < float(opts["max_cv"]):
            mean = w.dur_s / w.dur_n
            out.append(
                f"answered calls of near-identical length ({mean:.0f} s on average, CV {cv:.2f})"
            )
        callers = len(w.callers)
        block, share = w.top_block()
        if callers >= 10 and share >= float(opts["block_share"]):
            out.append(f"{share:.0%} of calls from one number block {block}xxxx")
        if callers >= 3 and w.tally.calls / callers >= float(opts["calls_per_caller"]):
            out.append(f"{w.tally.calls / callers:.1f} calls per caller")
        return out

    def _finding(
        self,
        st: _Subject,
        w: _Window,
        ctx: AccountContext,
        record: CallRecord,
        opts: dict[str, Any],
    ) -> Finding:
        rate_day = st.calls / max(st.exposure, 1e-9) * 24.0
        span = "in 1 h" if w.hours == 1 else "today (UTC)"
        what = (
            st.subject
            if st.kind == "number"
            else f"range {st.subject}xx ({len(w.numbers)} numbers)"
        )
        features = self._features(w, opts)
        cur = ctx.policy.currency
        why = (
            f"{w.tally.calls} calls {span} to {what} from {len(w.callers)} different callers "
            f"(usually {rate_day:.1f} calls a day), payout {cur} {money(w.tally.cost)}"
        )
        if features:
            why += "; " + "; ".join(features)
        return Finding(
            subject=st.subject,
            subject_kind=st.kind,
            severity=w.severity,
            started_at=w.tally.started_at,
            records=w.tally.calls,
            cost=w.tally.cost,
            prior_ids=w.tally.prior(),
            block="number" if st.kind == "number" else "prefix",
            global_scope=True,
            explanation={
                "parameter": f"calls_per_{'hour' if w.hours == 1 else 'day'}",
                "value": w.tally.calls,
                "expected": round(rate_day * w.hours / 24.0, 3),
                "p_value": float(f"{w.p:.3g}"),
                "distinct_callers": len(w.callers),
                "duration_cv": None if math.isinf(w.cv()) else round(w.cv(), 3),
                "features": features,
                "threshold": thresholds(ctx.settings(self), "p_value"),
                "why": why,
            },
        )


def _rank(sev: Severity | None) -> int:
    return 2 if sev == "critical" else 1 if sev == "warning" else 0
