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
from tollguard.detect.base import AccountContext, BaseDetector, Finding, Tally, money, thresholds
from tollguard.detect.stats import compound_spend_sf, effective_shape, nbinom_sf

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(slots=True)
class _Window:
    kind: str  # "hour" | "day"
    index: int
    mu: float
    shape: float
    tally: Tally
    cost_mean: float  # cost moments of the signature when the window opened
    cost_m2: float
    calls_gate: float = 0.0  # below these nothing can alert: no p-value is computed
    spend_gate: float = 0.0
    spend: float = 0.0
    top_cost: float = 0.0  # the single most expensive call of the window
    calls_level: dict[str, int] = field(default_factory=dict)  # severity -> count found
    spend_level: dict[str, float] = field(default_factory=dict)
    p_calls: float = 1.0
    p_spend: float = 1.0
    severity: Severity | None = None


def _open(
    kind: str, index: int, record: CallRecord, floor_calls: float, floor_spend: float
) -> _Window:
    """A window whose expectation is not computed yet: below the floors (``min_calls``,
    ``min_spend``) nothing can alert, so most quiet hours never need it."""
    w = _Window(kind, index, -1.0, 1.0, Tally(record.start), 0.0, 0.0)
    w.calls_gate = floor_calls - 1
    w.spend_gate = floor_spend - 1e-9
    return w


def _settle(w: _Window, ctx: AccountContext, first_hour: int, hours: int, disp: float) -> None:
    """Compute the window's expectation (signature of its hours) and its gates."""
    mu, shape = ctx.sig.window(first_hour, hours)
    shape = effective_shape(shape, disp)
    cost_mean, cost_m2 = ctx.sig.cost_moments()
    w.mu, w.shape, w.cost_mean, w.cost_m2 = mu, shape, cost_mean, cost_m2
    var_n = mu + mu * mu / shape
    w.calls_gate = max(mu + 2 * math.sqrt(var_n), w.calls_gate)
    mean_s = mu * cost_mean
    var_s = mu * max(cost_m2 - cost_mean**2, 0.0) + var_n * cost_mean**2
    w.spend_gate = max(mean_s + 2 * math.sqrt(var_s), w.spend_gate)


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
        st: dict[str, _Window] | None = ctx.state.get(self.name)
        if st is None:
            st = ctx.state[self.name] = {}
        settings = ctx.cur if ctx.cur is not None else ctx.settings(self)
        prep = settings.prepared
        if prep is None:
            opts = settings.options
            prep = settings.prepared = (
                float(opts["dispersion_hour"]),
                float(opts["dispersion_day"]),
                int(opts["min_history_hours"]),
                min(settings.warning.get("min_calls", 0), settings.critical.get("min_calls", 0)),
                min(settings.warning.get("min_spend", 0), settings.critical.get("min_spend", 0)),
            )
        disp_hour, disp_day, min_history, floor_calls, floor_spend = prep
        sig = ctx.sig
        hour = st.get("hour")
        if hour is None or ctx.hour_index > hour.index:
            # the hour's slot does not change before the hour ends: computed when needed
            hour = st["hour"] = _open("hour", ctx.hour_index, record, floor_calls, floor_spend)
        day = st.get("day")
        if day is None or ctx.day_index > day.index:
            # the day's expectation is fixed when it opens (its own hours are learned later)
            day = st["day"] = _open("day", ctx.day_index, record, floor_calls, floor_spend)
            _settle(day, ctx, ctx.day_index * 24, 24, disp_day)
        cost = ctx.cost_e4 / 10000.0
        young = sig.hour_index is None or (
            sig.first_hour is not None and sig.hour_index - sig.first_hour < min_history
        )
        best: _Window | None = None
        for w in (hour, day):
            w.tally.add(record, ctx)
            w.spend += cost
            if cost > w.top_cost:
                w.top_cost = cost
            if young:
                continue
            if (
                w.severity is None
                and w.tally.calls <= w.calls_gate
                and w.spend - w.top_cost <= w.spend_gate
            ):
                continue
            if w.mu < 0:  # the hour window reached a floor: now its expectation matters
                _settle(w, ctx, w.index, 1, disp_hour)
                if w.tally.calls <= w.calls_gate and w.spend - w.top_cost <= w.spend_gate:
                    continue
            sev = self._evaluate(w, settings.warning, settings.critical)
            if sev is not None and (best is None or _rank(sev) > _rank(best.severity)):
                best = w
        if best is not None:
            return [self._finding(best, ctx)]
        return []

    def _evaluate(
        self,
        w: _Window,
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
        cost_mean, cost_m2 = w.cost_mean, w.cost_m2
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
        cost_mean = w.cost_mean
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
                "threshold": thresholds(ctx.settings(self), "p_value"),
                "window": w.kind,
                "why": why,
            },
        )


def _rank(sev: Severity | None) -> int:
    return 2 if sev == "critical" else 1 if sev == "warning" else 0
