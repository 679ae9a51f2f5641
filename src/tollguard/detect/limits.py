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
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, ClassVar

from tollguard.cdr.model import CallRecord
from tollguard.detect.base import (
    ZERO,
    AccountContext,
    BaseDetector,
    Finding,
    SubjectKind,
    dec,
    e4_of,
    money,
)
from tollguard.policy import Limits

INTERNATIONAL = "international"
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@lru_cache(maxsize=4096)
def _month_of(day_index: int) -> int:
    d = date.fromordinal(day_index + _EPOCH_ORDINAL)
    return d.year * 12 + d.month


@dataclass(slots=True)
class _Counters:
    hour: int = -1
    day: int = -1
    month: int = -1
    spend_hour: int = 0  # money in integer ten-thousandths
    spend_day: int = 0
    spend_month: int = 0
    calls_day: int = 0
    spend_country: dict[str, int] = field(default_factory=dict)
    calls_country: dict[str, int] = field(default_factory=dict)
    spend_type: dict[str, int] = field(default_factory=dict)
    calls_type: dict[str, int] = field(default_factory=dict)
    starts: list[float] = field(default_factory=list)  # sorted call starts, last ~minutes
    warned: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Window:
    days: frozenset[int]
    start_s: int
    stop_s: int
    applies_to: str  # "ALL", "INTERNATIONAL" or a number type


@dataclass(slots=True)
class _Prepared:
    """An account's limits as integers (money e4), read once per account."""

    lim: Limits
    spend_hour: int | None
    spend_day: int | None
    spend_month: int | None
    spend_country: dict[str, int]
    spend_type: dict[str, int]
    windows: list[_Window]
    fraction: float


def _e4(value: Decimal | None) -> int | None:
    return None if value is None else e4_of(value)


def _prepare(ctx: AccountContext, fraction: float) -> _Prepared:
    lim = ctx.policy.limits
    windows = [
        _Window(
            w.weekdays(),
            w.start.hour * 3600 + w.start.minute * 60 + w.start.second,
            w.stop.hour * 3600 + w.stop.minute * 60 + w.stop.second,
            w.applies_to.upper(),
        )
        for w in lim.allowed_hours
    ]
    return _Prepared(
        lim,
        _e4(lim.max_spend_per_hour),
        _e4(lim.max_spend_per_day),
        _e4(lim.max_spend_per_month),
        {k: e4_of(v) for k, v in lim.max_spend_per_day_by_country.items()},
        {k: e4_of(v) for k, v in lim.max_spend_per_day_by_number_type.items()},
        windows,
        fraction,
    )


class LimitsDetector(BaseDetector):
    name = "limits"
    default_warning: ClassVar[dict[str, float]] = {"fraction": 0.8}
    default_critical: ClassVar[dict[str, float]] = {}
    default_options: ClassVar[dict[str, Any]] = {}

    # -- state --------------------------------------------------------------
    def _prepared(self, ctx: AccountContext) -> _Prepared:
        settings = ctx.settings(self)
        prep = settings.prepared
        if prep is None:
            prep = settings.prepared = _prepare(ctx, float(settings.warning.get("fraction", 0.8)))
        assert isinstance(prep, _Prepared)
        return prep

    def _counters(self, ctx: AccountContext) -> _Counters:
        c = ctx.state.get(self.name)
        if c is None:
            c = ctx.state[self.name] = _Counters()
        assert isinstance(c, _Counters)
        return c

    @staticmethod
    def _roll(c: _Counters, hour: int) -> None:
        if hour != c.hour:
            c.hour = hour
            c.spend_hour = 0
            if c.warned:
                c.warned = {w for w in c.warned if not w.endswith(":hour")}
        day = hour // 24
        if day != c.day:
            c.day = day
            c.spend_day = 0
            c.calls_day = 0
            c.spend_country.clear()
            c.calls_country.clear()
            c.spend_type.clear()
            c.calls_type.clear()
            if c.warned:
                c.warned = {w for w in c.warned if w.endswith(":month")}
            month = _month_of(day)
            if month != c.month:
                c.month = month
                c.spend_month = 0
                c.warned.clear()

    # -- the authorizer's question ------------------------------------------
    def would_refuse(
        self, record: CallRecord, ctx: AccountContext, start_ts: float | None = None
    ) -> str | None:
        if not ctx.has_limits:
            return None
        prep = self._prepared(ctx)
        lim = prep.lim
        start = record.start_ts if start_ts is None else start_ts
        local_s = start + ctx.zone.at(start)
        static = _static_breach(record, ctx, prep, local_s)
        if static is not None and static[0] != "max_call_duration_s":  # unknown at call start
            return f"{static[0]}: {static[2]}"
        c = ctx.state.get(self.name)
        if not isinstance(c, _Counters):
            return None
        hour = int(local_s // 3600)
        day = hour // 24
        if prep.spend_hour is not None and hour == c.hour and c.spend_hour >= prep.spend_hour:
            return (
                f"max_spend_per_hour: {lim.max_spend_per_hour} reached ({money(dec(c.spend_hour))})"
            )
        if day == c.day:
            if prep.spend_day is not None and c.spend_day >= prep.spend_day:
                return (
                    f"max_spend_per_day: {lim.max_spend_per_day} reached "
                    f"({money(dec(c.spend_day))})"
                )
            if lim.max_calls_per_day is not None and c.calls_day >= lim.max_calls_per_day:
                return f"max_calls_per_day: {lim.max_calls_per_day} reached"
            country = record.country or ""
            cap = prep.spend_country.get(country)
            if cap is not None and c.spend_country.get(country, 0) >= cap:
                shown = lim.max_spend_per_day_by_country[country]
                return f"max_spend_per_day_by_country: {country} {shown} reached"
            ncap = lim.max_calls_per_day_by_country.get(country)
            if ncap is not None and c.calls_country.get(country, 0) >= ncap:
                return f"max_calls_per_day_by_country: {country} {ncap} reached"
            ntype = record.number_type or ""
            cap = prep.spend_type.get(ntype)
            if cap is not None and c.spend_type.get(ntype, 0) >= cap:
                shown = lim.max_spend_per_day_by_number_type[ntype]
                return f"max_spend_per_day_by_number_type: {ntype} {shown} reached"
            ncap = lim.max_calls_per_day_by_number_type.get(ntype)
            if ncap is not None and c.calls_type.get(ntype, 0) >= ncap:
                return f"max_calls_per_day_by_number_type: {ntype} {ncap} reached"
        if (
            prep.spend_month is not None
            and _month_of(day) == c.month
            and c.spend_month >= prep.spend_month
        ):
            return f"max_spend_per_month: {lim.max_spend_per_month} reached"
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
        if not ctx.has_limits:
            return []
        prep = self._prepared(ctx)
        lim = prep.lim
        c = self._counters(ctx)
        self._roll(c, int((ctx.end_ts + ctx.offset) // 3600))
        cost = ctx.cost_e4
        country = record.country or ""
        ntype = record.number_type or ""
        c.spend_hour += cost
        c.spend_day += cost
        c.spend_month += cost
        c.calls_day += 1
        if country:
            c.spend_country[country] = c.spend_country.get(country, 0) + cost
            c.calls_country[country] = c.calls_country.get(country, 0) + 1
        if ntype:
            c.spend_type[ntype] = c.spend_type.get(ntype, 0) + cost
            c.calls_type[ntype] = c.calls_type.get(ntype, 0) + 1
        start = ctx.start_ts
        if lim.max_calls_per_minute is not None:
            bisect.insort(c.starts, start)
            cutoff = ctx.end_ts - 7200.0
            if c.starts and c.starts[0] < cutoff:
                del c.starts[: bisect.bisect_left(c.starts, cutoff)]

        out: list[Finding] = []
        start_off = ctx.zone.at(start)
        static = _static_breach(record, ctx, prep, start + start_off)
        if static is not None:
            sparam, svalue, swhy = static
            subject, kind = _subject_for(sparam, record, ctx)
            out.append(
                self._finding(record, ctx, sparam, subject, kind, "critical", svalue, swhy, swhy)
            )
        fraction = prep.fraction
        checks: list[tuple[str, int, int | None, str, str]] = []
        if prep.spend_hour is not None:
            checks.append(
                ("max_spend_per_hour", c.spend_hour, prep.spend_hour, "this hour", "hour")
            )
        if prep.spend_day is not None:
            checks.append(("max_spend_per_day", c.spend_day, prep.spend_day, "today", "day"))
        if prep.spend_month is not None:
            checks.append(
                ("max_spend_per_month", c.spend_month, prep.spend_month, "this month", "month")
            )
        if lim.max_calls_per_day is not None:
            checks.append(("max_calls_per_day", c.calls_day, lim.max_calls_per_day, "today", "day"))
        if country:
            if country in prep.spend_country:
                checks.append(
                    (
                        "max_spend_per_day_by_country",
                        c.spend_country[country],
                        prep.spend_country[country],
                        f"today to {country}",
                        "day",
                    )
                )
            if country in lim.max_calls_per_day_by_country:
                checks.append(
                    (
                        "max_calls_per_day_by_country",
                        c.calls_country[country],
                        lim.max_calls_per_day_by_country[country],
                        f"today to {country}",
                        "day",
                    )
                )
        if ntype:
            if ntype in prep.spend_type:
                checks.append(
                    (
                        "max_spend_per_day_by_number_type",
                        c.spend_type[ntype],
                        prep.spend_type[ntype],
                        f"today to {ntype} numbers",
                        "day",
                    )
                )
            if ntype in lim.max_calls_per_day_by_number_type:
                checks.append(
                    (
                        "max_calls_per_day_by_number_type",
                        c.calls_type[ntype],
                        lim.max_calls_per_day_by_number_type[ntype],
                        f"today to {ntype} numbers",
                        "day",
                    )
                )
        cur = ctx.policy.currency
        for param, value, limit, when, period in checks:
            if limit is None:
                continue
            is_money = param.startswith("max_spend")
            critical = value > limit
            if not critical and not (fraction > 0 and value >= limit * fraction):
                continue
            subject, kind = _subject_for(param, record, ctx)
            if not critical:  # one warning per limit, subject and period
                tag = f"{param}:{subject}:{period}"
                if tag in c.warned:
                    continue
                c.warned.add(tag)
            shown = f"{cur} {money(dec(value))}" if is_money else f"{value} calls"
            shown_limit = f"{cur} {money(dec(limit))}" if is_money else f"{limit}"
            why = (
                f"{shown} {when}, above the limit {param} = {shown_limit}"
                if critical
                else f"{shown} {when}: {int(fraction * 100)}% of the limit "
                f"{param} = {shown_limit} reached"
            )
            out.append(
                self._finding(
                    record,
                    ctx,
                    param,
                    subject,
                    kind,
                    "critical" if critical else "warning",
                    str(dec(value)) if is_money else str(value),
                    dec(limit) if is_money else limit,
                    why,
                )
            )
        if (
            lim.max_concurrent_calls is not None
            and ctx.peak_bound > lim.max_concurrent_calls
            and ctx.peak > lim.max_concurrent_calls
        ):
            why = (
                f"{ctx.peak} simultaneous calls, above the limit "
                f"max_concurrent_calls = {lim.max_concurrent_calls}"
            )
            out.append(
                self._finding(
                    record,
                    ctx,
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
                        ctx,
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
        ctx: AccountContext,
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
            cost=dec(ctx.cost_e4),
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


def _static_breach(
    record: CallRecord, ctx: AccountContext, prep: _Prepared, local_start_s: float
) -> tuple[str, str, str] | None:
    """Breaches that depend on the call alone: (parameter, value, why).
    ``local_start_s``: the call's start as local seconds since the epoch."""
    lim = prep.lim
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
    if prep.windows:
        international = bool(country) and country != ctx.home
        applicable = [
            w
            for w in prep.windows
            if w.applies_to == "ALL"
            or (w.applies_to == "INTERNATIONAL" and international)
            or w.applies_to == ntype
        ]
        day = int(local_start_s // 86400)
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        t = int(local_start_s - day * 86400)
        if applicable and not any(_in_window(w, weekday, t) for w in applicable):
            local = datetime(1970, 1, 1) + timedelta(seconds=int(local_start_s))
            shown = f"{_DAYS[weekday]} {local:%H:%M}"
            return (
                "allowed_hours",
                shown,
                f"call to {number} placed {shown} local time, outside the allowed hours",
            )
    if lim.max_call_duration_s is not None and record.duration > lim.max_call_duration_s:
        return (
            "max_call_duration_s",
            str(record.duration),
            f"call to {number} lasted {record.duration} s, above max_call_duration_s = "
            f"{lim.max_call_duration_s}",
        )
    return None


def _in_window(window: _Window, weekday: int, t: int) -> bool:
    start, stop = window.start_s, window.stop_s
    days = window.days
    if start <= stop:
        return weekday in days and start <= t < stop
    # over midnight: the part after midnight belongs to the previous day's window
    if t >= start:
        return weekday in days
    return (weekday - 1) % 7 in days and t < stop
