"""limits: the hard limits from the policy file, checked per call like an authorizer.

Counters live in the account's time zone: spend per clock hour, calendar day and
calendar month; calls per day; calls per minute (a sliding 60 s of call starts);
concurrent calls (from the overlap of known calls); per-country and per-number-type
daily caps. A call is counted in the period in which it ends (when its cost is known).

* A breach is critical: spend above a ``max_spend_*``, more calls than a ``max_calls_*``,
  more simultaneous calls than ``max_concurrent_calls``, a call longer than
  ``max_call_duration_s``, a blocked or not-allowed country or number type, a call
  placed outside ``allowed_hours``.
* A warning when spend or calls reach ``warning.fraction`` (default 0.8) of a limit.

``would_refuse`` is the authorizer's question at the start of a call: refuse when a
spend or call limit of the period is already reached, when the call is to a blocked
destination or outside the allowed hours, or when concurrent calls / calls per minute
are at their limit. The call that crosses a spend limit is let through (the authorizer
cannot know its cost in advance), so spend stays within the limit plus one call.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from tollguard.cdr.model import CallRecord
from tollguard.detect.base import (
    ZERO,
    AccountContext,
    BaseDetector,
    Finding,
    SubjectKind,
    cost_of,
    money,
)
from tollguard.policy import Limits

INTERNATIONAL = "international"


@dataclass(slots=True)
class _Counters:
    hour: int = -1
    day: int = -1
    month: int = -1
    spend_hour: Decimal = ZERO
    spend_day: Decimal = ZERO
    spend_month: Decimal = ZERO
    calls_day: int = 0
    spend_country: dict[str, Decimal] = field(default_factory=dict)
    calls_country: dict[str, int] = field(default_factory=dict)
    spend_type: dict[str, Decimal] = field(default_factory=dict)
    calls_type: dict[str, int] = field(default_factory=dict)
    starts: list[float] = field(default_factory=list)  # sorted call starts, last ~minutes
    day_started: datetime | None = None
    warned: set[str] = field(default_factory=set)


def _periods(local: datetime) -> tuple[int, int, int]:
    day = local.toordinal()
    return day * 24 + local.hour, day, local.year * 12 + local.month


class LimitsDetector(BaseDetector):
    name = "limits"
    default_warning: ClassVar[dict[str, float]] = {"fraction": 0.8}
    default_critical: ClassVar[dict[str, float]] = {}
    default_options: ClassVar[dict[str, Any]] = {}

    # -- state --------------------------------------------------------------
    def _counters(self, ctx: AccountContext) -> _Counters:
        c = ctx.state.get(self.name)
        if c is None:
            c = ctx.state[self.name] = _Counters()
        assert isinstance(c, _Counters)
        return c

    @staticmethod
    def _roll(c: _Counters, local_end: datetime) -> None:
        hour, day, month = _periods(local_end)
        if hour != c.hour:
            c.hour = hour
            c.spend_hour = ZERO
            c.warned = {w for w in c.warned if not w.endswith(":hour")}
        if day != c.day:
            c.day = day
            c.spend_day = ZERO
            c.calls_day = 0
            c.spend_country.clear()
            c.calls_country.clear()
            c.spend_type.clear()
            c.calls_type.clear()
            c.warned = {w for w in c.warned if w.endswith(":month")}
        if month != c.month:
            c.month = month
            c.spend_month = ZERO
            c.warned.clear()

    # -- the authorizer's question ------------------------------------------
    def would_refuse(self, record: CallRecord, ctx: AccountContext) -> str | None:
        lim = ctx.policy.limits
        static = _static_breach(record, ctx, lim)
        if static is not None and static[0] != "max_call_duration_s":  # unknown at call start
            return f"{static[0]}: {static[2]}"
        c = ctx.state.get(self.name)
        if not isinstance(c, _Counters):
            return None
        local_start = record.start.astimezone(ctx.tz)
        hour, day, month = _periods(local_start)
        if (
            lim.max_spend_per_hour is not None
            and hour == c.hour
            and (c.spend_hour >= lim.max_spend_per_hour)
        ):
            return f"max_spend_per_hour: {lim.max_spend_per_hour} reached ({money(c.spend_hour)})"
        if day == c.day:
            if lim.max_spend_per_day is not None and c.spend_day >= lim.max_spend_per_day:
                return f"max_spend_per_day: {lim.max_spend_per_day} reached ({money(c.spend_day)})"
            if lim.max_calls_per_day is not None and c.calls_day >= lim.max_calls_per_day:
                return f"max_calls_per_day: {lim.max_calls_per_day} reached"
            country = record.country or ""
            cap = lim.max_spend_per_day_by_country.get(country)
            if cap is not None and c.spend_country.get(country, ZERO) >= cap:
                return f"max_spend_per_day_by_country: {country} {cap} reached"
            ncap = lim.max_calls_per_day_by_country.get(country)
            if ncap is not None and c.calls_country.get(country, 0) >= ncap:
                return f"max_calls_per_day_by_country: {country} {ncap} reached"
            ntype = record.number_type or ""
            cap = lim.max_spend_per_day_by_number_type.get(ntype)
            if cap is not None and c.spend_type.get(ntype, ZERO) >= cap:
                return f"max_spend_per_day_by_number_type: {ntype} {cap} reached"
            ncap = lim.max_calls_per_day_by_number_type.get(ntype)
            if ncap is not None and c.calls_type.get(ntype, 0) >= ncap:
                return f"max_calls_per_day_by_number_type: {ntype} {ncap} reached"
        if (
            lim.max_spend_per_month is not None
            and month == c.month
            and (c.spend_month >= lim.max_spend_per_month)
        ):
            return f"max_spend_per_month: {lim.max_spend_per_month} reached"
        start = record.start.timestamp()
        if lim.max_calls_per_minute is not None:
            n = _starts_in(c.starts, start - 60.0, start)
            if n >= lim.max_calls_per_minute:
                return f"max_calls_per_minute: {lim.max_calls_per_minute} reached"
        if lim.max_concurrent_calls is not None:
            active = ctx.overlap.active_at(start)
            if active >= lim.max_concurrent_calls:
                return f"max_concurrent_calls: {lim.max_concurrent_calls} reached ({active} active)"
        return None

    def refused(self, record: CallRecord, ctx: AccountContext, why: str) -> list[Finding]:
        """A critical finding for a call the authorizer refused (enforce replay)."""
        param = why.split(":", 1)[0]
        subject, kind = _subject_for(param, record, ctx)
        return [
            Finding(
                subject=subject,
                subject_kind=kind,
                severity="critical",
                started_at=record.start,
                records=1,
                cost=ZERO,
                situation=param,
                prior_ids=(record.record_id,),
                explanation={
                    "parameter": param,
                    "value": why,
                    "threshold": why,
                    "why": f"call to {record.callee_e164 or record.callee} refused: {why}",
                    "refused": True,
                },
            )
        ]

    # -- detection ----------------------------------------------------------
    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        lim = ctx.policy.limits
        c = self._counters(ctx)
        local_end = ctx.local
        self._roll(c, local_end)
        cost = cost_of(record)
        country = record.country or ""
        ntype = record.number_type or ""
        if c.day_started is None or c.calls_day == 0:
            c.day_started = record.start
        c.spend_hour += cost
        c.spend_day += cost
        c.spend_month += cost
        c.calls_day += 1
        if country:
            c.spend_country[country] = c.spend_country.get(country, ZERO) + cost
            c.calls_country[country] = c.calls_country.get(country, 0) + 1
        if ntype:
            c.spend_type[ntype] = c.spend_type.get(ntype, ZERO) + cost
            c.calls_type[ntype] = c.calls_type.get(ntype, 0) + 1
        start = record.start.timestamp()
        if lim.max_calls_per_minute is not None:
            bisect.insort(c.starts, start)
            cutoff = record.end.timestamp() - 7200.0
            if c.starts and c.starts[0] < cutoff:
                del c.starts[: bisect.bisect_left(c.starts, cutoff)]

        out: list[Finding] = []
        static = _static_breach(record, ctx, lim)
        if static is not None:
            sparam, svalue, swhy = static
            subject, kind = _subject_for(sparam, record, ctx)
            out.append(self._finding(record, sparam, subject, kind, "critical", svalue, swhy, swhy))
        fraction = ctx.settings(self).warning.get("fraction", 0.8)
        checks: list[tuple[str, Decimal | int, Decimal | int | None, str, str]] = [
            ("max_spend_per_hour", c.spend_hour, lim.max_spend_per_hour, "this hour", "hour"),
            ("max_spend_per_day", c.spend_day, lim.max_spend_per_day, "today", "day"),
            ("max_spend_per_month", c.spend_month, lim.max_spend_per_month, "this month", "month"),
            ("max_calls_per_day", c.calls_day, lim.max_calls_per_day, "today", "day"),
        ]
        if country:
            checks.append(
                (
                    "max_spend_per_day_by_country",
                    c.spend_country[country],
                    lim.max_spend_per_day_by_country.get(country),
                    f"today to {country}",
                    "day",
                )
            )
            checks.append(
                (
                    "max_calls_per_day_by_country",
                    c.calls_country[country],
                    lim.max_calls_per_day_by_country.get(country),
                    f"today to {country}",
                    "day",
                )
            )
        if ntype:
            checks.append(
                (
                    "max_spend_per_day_by_number_type",
                    c.spend_type[ntype],
                    lim.max_spend_per_day_by_number_type.get(ntype),
                    f"today to {ntype} numbers",
                    "day",
                )
            )
            checks.append(
                (
                    "max_calls_per_day_by_number_type",
                    c.calls_type[ntype],
                    lim.max_calls_per_day_by_number_type.get(ntype),
                    f"today to {ntype} numbers",
                    "day",
                )
            )
        for param, value, limit, when, period in checks:
            if limit is None:
                continue
            is_money = param.startswith("max_spend")
            shown = f"{ctx.policy.currency} {money(value)}" if is_money else f"{value} calls"
            shown_limit = f"{ctx.policy.currency} {money(limit)}" if is_money else f"{limit}"
            subject, kind = _subject_for(param, record, ctx)
            if value > limit:
                why = f"{shown} {when}, above the limit {param} = {shown_limit}"
                out.append(
                    self._finding(record, param, subject, kind, "critical", str(value), limit, why)
                )
            elif fraction > 0 and value >= limit * Decimal(str(fraction)):
                tag = f"{param}:{subject}:{period}"
                if tag not in c.warned:
                    c.warned.add(tag)
                    why = (
                        f"{shown} {when}: {int(fraction * 100)}% of the limit "
                        f"{param} = {shown_limit} reached"
                    )
                    out.append(
                        self._finding(
                            record, param, subject, kind, "warning", str(value), limit, why
                        )
                    )
        if lim.max_concurrent_calls is not None and ctx.peak > lim.max_concurrent_calls:
            why = (
                f"{ctx.peak} simultaneous calls, above the limit "
                f"max_concurrent_calls = {lim.max_concurrent_calls}"
            )
            out.append(
                self._finding(
                    record,
                    "max_concurrent_calls",
                    ctx.account,
                    "account",
                    "critical",
                    ctx.peak,
                    lim.max_concurrent_calls,
                    why,
                )
            )
        if lim.max_calls_per_minute is not None:
            n = _starts_in(c.starts, start - 60.0, start + 60.0)
            per_min = max(n, _starts_in(c.starts, start - 60.0, start))
            if per_min > lim.max_calls_per_minute:
                why = (
                    f"{per_min} calls started within a minute, above the limit "
                    f"max_calls_per_minute = {lim.max_calls_per_minute}"
                )
                out.append(
                    self._finding(
                        record,
                        "max_calls_per_minute",
                        ctx.account,
                        "account",
                        "critical",
                        per_min,
                        lim.max_calls_per_minute,
                        why,
                    )
                )
        return out

    @staticmethod
    def _finding(
        record: CallRecord,
        param: str,
        subject: str,
        kind: SubjectKind,
        severity: Any,
        value: Any,
        threshold: Any,
        why: str,
    ) -> Finding:
        return Finding(
            subject=subject,
            subject_kind=kind,
            severity=severity,
            started_at=record.start,
            records=1,
            cost=cost_of(record),
            situation=param,
            prior_ids=(record.record_id,),
            explanation={
                "parameter": param,
                "value": str(value),
                "threshold": str(threshold),
                "why": why,
            },
        )


def _starts_in(starts: list[float], lo: float, hi: float) -> int:
    return bisect.bisect_right(starts, hi) - bisect.bisect_right(starts, lo)


def _subject_for(param: str, record: CallRecord, ctx: AccountContext) -> tuple[str, SubjectKind]:
    if "country" in param:
        return record.country or "?", "country"
    if "number_type" in param or "number_types" in param:
        return record.number_type or "?", "number_type"
    return ctx.account, "account"


def _is_international(record: CallRecord, ctx: AccountContext) -> bool:
    home = ctx.policy.context.country
    return bool(record.country) and record.country != home


def _static_breach(
    record: CallRecord, ctx: AccountContext, lim: Limits
) -> tuple[str, str, str] | None:
    """Breaches that depend on the call alone: (parameter, value, why)."""
    country = record.country or ""
    ntype = record.number_type or ""
    number = record.callee_e164 or record.callee
    if country and country in lim.blocked_countries:
        return "blocked_countries", country, f"call to {number}: {country} is a blocked country"
    if lim.allowed_countries and country not in lim.allowed_countries and country:
        return (
            "allowed_countries",
            country,
            f"call to {number}: {country} is not in allowed_countries {lim.allowed_countries}",
        )
    if ntype and ntype in lim.blocked_number_types:
        return (
            "blocked_number_types",
            ntype,
            f"call to {number}: {ntype} numbers are blocked",
        )
    if lim.allowed_number_types and ntype and ntype not in lim.allowed_number_types:
        return (
            "allowed_number_types",
            ntype,
            f"call to {number}: {ntype} is not in allowed_number_types",
        )
    if lim.allowed_hours:
        local = record.start.astimezone(ctx.tz)
        applicable = [
            w
            for w in lim.allowed_hours
            if w.applies_to == "all"
            or (w.applies_to == INTERNATIONAL and _is_international(record, ctx))
            or w.applies_to.upper() == ntype
        ]
        if applicable and not any(_in_window(w, local) for w in applicable):
            return (
                "allowed_hours",
                local.strftime("%a %H:%M"),
                f"call to {number} placed {local.strftime('%a %H:%M')} local time, "
                "outside the allowed hours",
            )
    if lim.max_call_duration_s is not None and record.duration > lim.max_call_duration_s:
        return (
            "max_call_duration_s",
            str(record.duration),
            f"call to {number} lasted {record.duration} s, above max_call_duration_s = "
            f"{lim.max_call_duration_s}",
        )
    return None


def _in_window(window: Any, local: datetime) -> bool:
    t = local.time().replace(tzinfo=None)
    start, stop = window.start, window.stop
    days = window.weekdays()
    if start <= stop:
        return local.weekday() in days and start <= t < stop
    # over midnight: the part after midnight belongs to the previous day's window
    if t >= start:
        return local.weekday() in days
    return (local.weekday() - 1) % 7 in days and t < stop
