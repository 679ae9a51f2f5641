"""concurrency: more simultaneous calls than this account ever has.

The engine reconstructs overlap from start/end times in event time (see
``base.Overlap``): CDRs arrive at the end of each call, so the peak number of calls in
progress around a call is known when the last call of an overlapping group arrives.

Expected: for calls arriving as a Poisson stream at the hour-of-week rate lambda with
mean duration D, the number in progress is Poisson(lambda * D) (M/G/infinity), with the
same Gamma uncertainty on lambda as ``deviation`` -> negative binomial. A peak alerts when
it is improbable (``p_value`` warning 1e-4, critical 1e-7) *and* above the account's own
learned daily peak (decayed maximum) by a factor (``over_usual`` 1.5 / 2) *and* at least
``min_calls`` (4 / 8) calls. Critical also needs the episode's calls to have cost at least
``min_spend`` (50, account currency): a marketing day's many cheap domestic calls can
double the usual peak, and blocking that account would be the harm. Accounts with less
than ``options.min_history_hours`` (24) of history have no usual peak yet and are
skipped. The hard ``max_concurrent_calls`` limit is checked by ``limits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import Severity
from tollguard.detect.base import AccountContext, BaseDetector, Finding, Tally, money, thresholds
from tollguard.detect.stats import effective_shape, nbinom_sf


@dataclass(slots=True)
class _State:
    tally: Tally
    severity: Severity | None
    peak: int
    p: float


class ConcurrencyDetector(BaseDetector):
    name = "concurrency"
    default_warning: ClassVar[dict[str, float]] = {
        "p_value": 1e-4,
        "min_calls": 4,
        "over_usual": 1.5,
    }
    default_critical: ClassVar[dict[str, float]] = {
        "p_value": 1e-7,
        "min_calls": 8,
        "over_usual": 2.0,
        "min_spend": 50,
    }
    default_options: ClassVar[dict[str, Any]] = {
        "dispersion": 3.0,
        "gap_minutes": 60,
        "min_history_hours": 24,
    }

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        settings = ctx.cur if ctx.cur is not None else ctx.settings(self)
        warn = settings.warning
        st: _State | None = ctx.state.get(self.name)
        if st is not None and (
            ctx.end_ts - st.tally.last_ts > 60 * float(settings.options["gap_minutes"])
        ):
            st = None
            ctx.state.pop(self.name, None)
        usual = ctx.sig.peak
        floor = max(warn["min_calls"], usual * warn["over_usual"])
        young = ctx.sig.history_hours() < int(settings.options["min_history_hours"])
        if st is None and (young or ctx.peak_bound < floor):
            return []  # even the upper bound is usual: skip the exact sweep
        peak = ctx.peak
        if young or peak < floor:
            if st is None:
                return []
            st.tally.add(record, ctx)
            return [self._finding(st, ctx, usual)]
        sig = ctx.sig
        rate, wshape = sig.window(ctx.hour_index, 1)
        mean = rate * sig.duration_mean() / 3600.0
        shape = effective_shape(wshape, float(settings.options["dispersion"]))
        p = nbinom_sf(peak, shape, max(mean, 1e-9))
        sev: Severity | None = None
        spend_e4 = ctx.cost_e4 + (st.tally.cost_e4 if st is not None else 0)
        for name, th in (("critical", settings.critical), ("warning", warn)):
            if peak >= th["min_calls"] and peak >= usual * th["over_usual"] and p < th["p_value"]:
                if spend_e4 < th.get("min_spend", 0) * 10000:
                    continue  # an episode of cheap calls (a campaign day) is not a hack
                sev = name  # type: ignore[assignment]
                break
        if st is None:
            if sev is None:
                return []
            st = ctx.state[self.name] = _State(Tally(record.start), sev, peak, p)
        st.tally.add(record, ctx)
        if peak > st.peak:
            st.peak, st.p = peak, p
        if sev == "critical":
            st.severity = "critical"
        return [self._finding(st, ctx, usual)]

    def _finding(self, st: _State, ctx: AccountContext, usual: float) -> Finding:
        cur = ctx.policy.currency
        why = (
            f"{st.peak} calls in progress at the same time (usually at most {usual:.0f}); "
            f"{st.tally.calls} calls in this episode costing {cur} {money(st.tally.cost)} "
            f"(probability {st.p:.1e})"
        )
        return Finding(
            subject=ctx.account,
            subject_kind="account",
            severity=st.severity,
            started_at=st.tally.started_at,
            records=st.tally.calls,
            cost=st.tally.cost,
            prior_ids=st.tally.prior(),
            explanation={
                "parameter": "concurrent_calls",
                "value": st.peak,
                "expected": round(usual, 2),
                "p_value": float(f"{st.p:.3g}"),
                "threshold": thresholds(ctx.settings(self), "p_value"),
                "why": why,
            },
        )
