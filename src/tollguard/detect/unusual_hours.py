"""unusual_hours: traffic when this account is normally silent (nights, weekends).

An hour of the week is *silent* for an account when its expected call rate (signature,
pooled with the population shape for new accounts) is below ``options.silent_fraction``
(0.15) of the account's average hourly rate. Calls in silent hours are gathered into a
stretch (a new stretch starts after ``options.gap_hours`` (3) without silent-hour calls
or when a busy hour is reached). The number of calls in the stretch is tested against
the expected number for the hours it spans with the same Gamma-Poisson predictive as
``deviation``.

Thresholds: ``warning`` p_value 1e-3 and min_calls 5; ``critical`` p_value 1e-7,
min_calls 20 and min_spend 25 (account currency; an evening of cheap overtime calls is
not a hack). An account with less than ``options.min_history_hours`` (24) of history is
judged by the population shape alone and gets at most a warning; a terminating account
(an interconnect) is not judged until it has that history: its hours are its callers',
and the population's office hours say nothing about them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import Severity
from tollguard.detect.base import AccountContext, BaseDetector, Finding, Tally, money, thresholds
from tollguard.detect.stats import effective_shape, nbinom_sf

SILENT_FRACTION = 0.15
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def is_silent(ctx: AccountContext, fraction: float = SILENT_FRACTION) -> bool:
    """Is the current hour of week one in which this account is normally silent?"""
    return ctx.silent(fraction)


@dataclass(slots=True)
class _Stretch:
    first_hour: int
    last_hour: int
    mu: float
    tally: Tally
    first_local: str
    shape: float = 1.0
    severity: Severity | None = None
    p: float = 1.0


class UnusualHoursDetector(BaseDetector):
    name = "unusual_hours"
    default_warning: ClassVar[dict[str, float]] = {"p_value": 1e-3, "min_calls": 5}
    default_critical: ClassVar[dict[str, float]] = {
        "p_value": 1e-7,
        "min_calls": 20,
        "min_spend": 25,
    }
    default_options: ClassVar[dict[str, Any]] = {
        "silent_fraction": SILENT_FRACTION,
        "gap_hours": 3,
        "dispersion": 3.0,
        "min_history_hours": 24,
    }

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        settings = ctx.cur if ctx.cur is not None else ctx.settings(self)
        fraction = settings.prepared
        if fraction is None:
            fraction = settings.prepared = float(settings.options["silent_fraction"])
        if not ctx.silent(fraction):
            if self.name in ctx.state:
                del ctx.state[self.name]
            return []
        opts = settings.options
        sig = ctx.sig
        young = sig.history_hours() < int(opts["min_history_hours"])
        if young and ctx.terminating:
            return []  # a trunk's hours are its callers': no office shape to judge them by
        st: _Stretch | None = ctx.state.get(self.name)
        if st is None or ctx.hour_index - st.last_hour > int(opts["gap_hours"]):
            mu, wshape = sig.window(ctx.hour_index, 1)
            st = _Stretch(
                ctx.hour_index,
                ctx.hour_index,
                mu,
                Tally(record.start),
                f"{_DAYS[ctx.local.weekday()]} {ctx.local:%H}:00",
                wshape,
            )
            ctx.state[self.name] = st
        elif ctx.hour_index > st.last_hour:
            st.last_hour = ctx.hour_index
            st.mu, st.shape = sig.window(st.first_hour, st.last_hour - st.first_hour + 1)
        st.tally.add(record, ctx)
        calls = st.tally.calls
        shape = effective_shape(st.shape, float(opts["dispersion"]))
        sev: Severity | None = None
        levels = (("critical", settings.critical), ("warning", settings.warning))
        for name, th in levels[1:] if young else levels:
            if calls < th.get("min_calls", 0):
                continue
            if st.tally.cost_e4 < th.get("min_spend", 0) * 10000:
                continue
            if st.p >= th["p_value"]:
                sd = math.sqrt(st.mu + st.mu * st.mu / shape)
                if calls <= st.mu + 2 * sd:
                    continue
                st.p = nbinom_sf(calls, shape, st.mu)
            if st.p < th["p_value"]:
                sev = name  # type: ignore[assignment]
                break
        if sev == "critical" or (sev == "warning" and st.severity is None):
            st.severity = sev
        if st.severity is None:
            return []
        cur = ctx.policy.currency
        until = f"{(ctx.local.hour + 1) % 24:02d}:00"
        why = (
            f"{calls} calls between {st.first_local} and {until} costing {cur} "
            f"{money(st.tally.cost)}, when this account is normally silent "
            f"(usually {st.mu:.2f} calls in those hours; probability {st.p:.1e})"
        )
        return [
            Finding(
                subject=ctx.account,
                subject_kind="account",
                severity=st.severity,
                started_at=st.tally.started_at,
                records=calls,
                cost=st.tally.cost,
                prior_ids=st.tally.prior(),
                explanation={
                    "parameter": "calls_in_silent_hours",
                    "value": calls,
                    "expected": round(st.mu, 3),
                    "p_value": float(f"{st.p:.3g}"),
                    "threshold": thresholds(settings, "p_value"),
                    "why": why,
                },
            )
        ]
