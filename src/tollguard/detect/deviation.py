"""deviation: call volume and spend per window against the account's signature.

Windows: the current local clock hour and the current local calendar day. For each
window the signature gives the expected number of calls ``mu`` (sum of the hour-of-week
posterior rates it spans). The count is tested with a Gamma-Poisson (negative binomial)
posterior predictive: the rate is Gamma with shape ``a_eff`` combining the uncertainty
of the account's level (shape = prior pseudo-calls + learned calls) and a window-to-window
random effect (``options.dispersion_hour`` 3, ``dispersion_day`` 6), so a busy Monday is
not an anomaly but fifty calls in a normally quiet hour is. Spend is tested with the
compound model S = sum of N call costs (N negative binomial, cost moments from the
signature, a Gamma with the same mean and variance gives the tail), applied to the
window's spend minus its single most expensive call, so that one long legitimate call
is not a deviation (single calls are for ``destination`` and ``limits``).

The test runs as a window fills: P(X_window >= calls so far) is an upper bound of the
final p-value, so an alert comes with the record that makes the count improbable.

Thresholds (per account in the policy): ``warning.p_value`` 1e-4, ``critical.p_value``
1e-7, and floors ``min_calls`` (10 / 20) and ``min_spend`` (20 / 50, account currency)
so that tiny absolute numbers never alert. Accounts with less than
``options.min_history_hours`` (24) of history are left to the other detectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import Severity
from tollguard.detect.base import AccountContext, BaseDetector, Finding, Tally, cost_of, money
from tollguard.detect.stats import compound_spend_sf, effective_shape, nbinom_sf

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(slots=True)
class _Window:
    kind: str  # "hour" | "day"
    index: int
    mu: float
    shape: float
    tally: Tally
    spend: float = 0.0
    top_cost: float = 0.0  # the single most expensive call of the window
    calls_level: dict[str, int] = field(default_factory=dict)  # severity -> count found
    spend_level: dict[str, float] = field(default_factory=dict)
    p_calls: float = 1.0
    p_spend: float = 1.0
    severity: Severity | None = None


class DeviationDetector(BaseDetector):
    name = "deviation"
    default_warning: ClassVar[dict[str, float]] = {
        "p_value": 1e-4,
        "min_calls": 10,
        "min_spend": 20,
    }
    default_critical: ClassVar[dict[str, float]] = {
        "p_value": 1e-7,
        "min_calls": 20,
        "min_spend": 50,
    }
    default_options: ClassVar[dict[str, Any]] = {
        "dispersion_hour": 3.0,
        "dispersion_day": 6.0,
        "min_history_hours": 24,
    }

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        st: dict[str, _Window] = ctx.state.setdefault(self.name, {})
        settings = ctx.settings(self)
        opts = settings.options
        sig = ctx.sig
        hour = st.get("hour")
        if hour is None or ctx.hour_index > hour.index:
            mu, shape = sig.window(ctx.hour_index, 1)
            shape = effective_shape(shape, float(opts["dispersion_hour"]))
            hour = st["hour"] = _Window("hour", ctx.hour_index, mu, shape, Tally(record.start))
        day = st.get("day")
        if day is None or ctx.day_index > day.index:
            mu, shape = sig.window(ctx.day_index * 24, 24)
            shape = effective_shape(shape, float(opts["dispersion_day"]))
            day = st["day"] = _Window("day", ctx.day_index, mu, shape, Tally(record.start))
        cost = float(cost_of(record))
        out: list[Finding] = []
        young = sig.history_hours() < int(opts["min_history_hours"])
        best: _Window | None = None
        for w in (hour, day):
            w.tally.add(record)
            w.spend += cost
            w.top_cost = max(w.top_cost, cost)
            if young:
                continue
            sev = self._evaluate(w, ctx, settings.warning, settings.critical)
            if sev is not None and (best is None or _rank(sev) > _rank(best.severity)):
                best = w
        if best is not None:
            out.append(self._finding(best, ctx))
        return out

    def _evaluate(
        self,
        w: _Window,
        ctx: AccountContext,
        warning: dict[str, float],
        critical: dict[str, float],
    ) -> Severity | None:
        calls = w.tally.calls
        var_n = w.mu + w.mu * w.mu / w.shape
        sd_n = math.sqrt(var_n)
        levels = (("critical", critical), ("warning", warning))
        # counts
        if calls > w.mu + 2 * sd_n:
            for name, th in levels:
                if name in w.calls_level:
                    continue
                if calls < th.get("min_calls", 0):
                    continue
                if w.p_calls > th["p_value"]:
                    w.p_calls = nbinom_sf(calls, w.shape, w.mu)
                if w.p_calls < th["p_value"]:
                    w.calls_level[name] = calls
        # spend
        cost_mean, cost_m2 = ctx.sig.cost_moments()
        mean_s = w.mu * cost_mean
        var_s = w.mu * max(cost_m2 - cost_mean**2, 0.0) + var_n * cost_mean**2
        # one expensive call is not a deviation of the account's traffic (the destination
        # detector and the limits look at single calls): test the spend without the top call
        spend = w.spend - w.top_cost
        if spend > mean_s + 2 * math.sqrt(var_s):
            for name, th in levels:
                if name in w.spend_level:
                    continue
                if spend < th.get("min_spend", 0):
                    continue
                p = compound_spend_sf(spend, w.mu, var_n, cost_mean, cost_m2)
                w.p_spend = min(w.p_spend, p)
                if p < th["p_value"]:
                    w.spend_level[name] = spend
        sev: Severity | None = None
        if "critical" in w.calls_level or "critical" in w.spend_level:
            sev = "critical"
        elif "warning" in w.calls_level or "warning" in w.spend_level:
            sev = "warning"
        if sev is not None:
            w.severity = sev
        return w.severity

    def _finding(self, w: _Window, ctx: AccountContext) -> Finding:
        cur = ctx.policy.currency
        if w.kind == "hour":
            nxt = (ctx.local.hour + 1) % 24
            span = f"between {ctx.local:%H}:00 and {nxt:02d}:00 ({_DAYS[ctx.local.weekday()]})"
            usual = "in that hour of the week"
        else:
            span = f"today ({ctx.local:%a %Y-%m-%d})"
            usual = "on such a day"
        spend_led = ("critical" in w.spend_level and "critical" not in w.calls_level) or (
            not w.calls_level and w.spend_level
        )
        cost_mean, _ = ctx.sig.cost_moments()
        if spend_led:
            param = f"spend_per_{w.kind}"
            value: Any = money(w.spend)
            expected: Any = money(w.mu * cost_mean)
            p = w.p_spend
            why = (
                f"{cur} {money(w.spend)} spent on {w.tally.calls} calls {span}; this account "
                f"usually spends about {cur} {money(w.mu * cost_mean)} {usual} "
                f"(probability {p:.1e} under its normal traffic)"
            )
        else:
            param = f"calls_per_{w.kind}"
            value = w.tally.calls
            expected = round(w.mu, 2)
            p = w.p_calls
            why = (
                f"{w.tally.calls} calls {span} costing {cur} {money(w.spend)}; this account "
                f"usually makes {w.mu:.1f} calls {usual} "
                f"(probability {p:.1e} under its normal traffic)"
            )
        return Finding(
            subject=ctx.account,
            subject_kind="account",
            severity=w.severity,
            started_at=w.tally.started_at,
            records=w.tally.calls,
            cost=w.tally.cost,
            prior_ids=w.tally.prior(),
            explanation={
                "parameter": param,
                "value": value,
                "expected": expected,
                "p_value": float(f"{p:.3g}"),
                "threshold": {
                    "warning": ctx.settings(self).warning["p_value"],
                    "critical": ctx.settings(self).critical["p_value"],
                },
                "window": w.kind,
                "why": why,
            },
        )


def _rank(sev: Severity | None) -> int:
    return 2 if sev == "critical" else 1 if sev == "warning" else 0
