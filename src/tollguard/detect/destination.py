"""destination: where the calls go. High-risk ranges, premium rate, satellite, new countries.

One situation per (account, subject) where the subject is the callee's country (for
high-risk ranges and countries this account has not called before) or the number type
(premium rate, satellite, when unusual for this account). A situation collects calls
for ``options.window_hours`` (24) after its last call.

What the account "knows": countries and number types learned by its signature (decayed
counts from closed days, ``options.known_weight`` 0.5), its home country (the policy's
dialing country), and, for a country that is not high-risk, any country that carries at
least ``options.common_share`` (0.1 %) of the population's calls (priors). A high-risk
range is never "known" through the population, only through the account's own history;
premium rate is "usual" only when the account itself calls it (``premium_known_weight``).

Default thresholds (calls and spend within the situation):

===================  ==========================  ===========================
kind                 warning                     critical
===================  ==========================  ===========================
high-risk range      ``risk_calls`` 1            ``risk_calls`` 3 or ``risk_spend`` 20
satellite            ``risk_calls`` 1            ``risk_calls`` 3 or ``risk_spend`` 20
premium rate         ``premium_calls`` 5 or      ``premium_calls`` 25 or
                     ``premium_spend`` 60        ``premium_spend`` 250
new country          ``new_country_calls`` 3 or  never by default (a business trip to
                     ``new_country_spend`` 20    Japan is a warning); set
                                                 ``critical.new_country_calls`` to allow
===================  ==========================  ===========================

A high-risk entry inside the account's own country (e.g. an adult premium-rate range
on the bundled list) is judged as premium rate, not as a never-called country.

Calls placed when the account is normally silent count double towards the call
thresholds of high-risk and new-country situations (``options.silent_weight`` 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
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
)
from tollguard.detect.unusual_hours import is_silent

RISKY_TYPES = {"PREMIUM_RATE": "premium", "SATELLITE": "satellite"}
COUNTRY_NAMES = {
    "TL": "Timor-Leste",
    "SO": "Somalia",
    "ZW": "Zimbabwe",
    "JP": "Japan",
    "CU": "Cuba",
    "LV": "Latvia",
    "LT": "Lithuania",
    "001": "international networks",
}


@dataclass(slots=True)
class _Situation:
    kind: str  # "risk" | "satellite" | "premium" | "new_country"
    subject: str
    subject_kind: SubjectKind
    tally: Tally
    weight: float = 0.0  # calls, silent-hour calls weighted
    silent: int = 0
    risk: str | None = None
    severity: Severity | None = None


class DestinationDetector(BaseDetector):
    name = "destination"
    default_warning: ClassVar[dict[str, float]] = {
        "risk_calls": 1,
        "premium_calls": 5,
        "premium_spend": 60,
        "new_country_calls": 3,
        "new_country_spend": 20,
    }
    default_critical: ClassVar[dict[str, float]] = {
        "risk_calls": 3,
        "risk_spend": 20,
        "premium_calls": 25,
        "premium_spend": 250,
    }
    default_options: ClassVar[dict[str, Any]] = {
        "window_hours": 24,
        "known_weight": 0.5,
        "common_share": 0.001,
        "premium_known_weight": 3.0,
        "silent_weight": 2.0,
    }

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        settings = ctx.settings(self)
        opts = settings.options
        sig = ctx.sig
        country = record.country
        ntype = record.number_type or ""
        home = ctx.policy.context.country
        priors = sig.priors
        kind: str | None = None
        subject = ""
        subject_kind: SubjectKind = "country"
        if (record.risk and country != home) or ntype == "SATELLITE":
            known = bool(country) and sig.knows_country(country or "", float(opts["known_weight"]))
            if not known:
                kind = "risk" if record.risk else "satellite"
                subject = country or ntype
        if (
            kind is None
            and country
            and country != home
            and not sig.knows_country(country, float(opts["known_weight"]))
            and priors.country_share.get(country, 0.0) < float(opts["common_share"])
        ):
            kind, subject = "new_country", country
        if kind is None and ntype == "PREMIUM_RATE":
            learned = sig.type_weight(ntype)
            if learned < float(opts["premium_known_weight"]):
                kind, subject, subject_kind = "premium", ntype, "number_type"
        if kind is None:
            return []
        table: dict[str, _Situation] = ctx.state.setdefault(self.name, {})
        sit = table.get(subject)
        window = float(opts["window_hours"]) * 3600.0
        if (
            sit is not None
            and sit.tally.last is not None
            and ((record.end - sit.tally.last).total_seconds() > window)
        ):
            sit = None
        if sit is None:
            sit = table[subject] = _Situation(kind, subject, subject_kind, Tally(record.start))
            if len(table) > 256:  # bounded: drop the stalest situation
                stalest = min(table, key=lambda k: table[k].tally.last or record.end)
                table.pop(stalest, None)
        silent = is_silent(ctx)
        sit.tally.add(record)
        sit.silent += int(silent)
        sit.weight += float(opts["silent_weight"]) if silent else 1.0
        sit.risk = sit.risk or record.risk
        sev = _severity(sit, settings.warning, settings.critical)
        if _rank(sev) > _rank(sit.severity):
            sit.severity = sev
        return [self._finding(sit, ctx, record)]

    def _finding(self, sit: _Situation, ctx: AccountContext, record: CallRecord) -> Finding:
        cur = ctx.policy.currency
        t = sit.tally
        name = COUNTRY_NAMES.get(sit.subject, sit.subject)
        prefix = _country_code(record)
        where = f"{name} ({prefix})" if prefix else name
        night = (
            f"; {sit.silent} of them at hours when this account is normally silent"
            if sit.silent
            else ""
        )
        spent = f" costing {cur} {money(t.cost)}"
        if sit.kind == "risk":
            why = (
                f"{t.calls} calls to {where}{spent}, a high-risk destination "
                f"({sit.risk}); this account never called {sit.subject}{night}"
            )
            param = "high_risk_calls"
        elif sit.kind == "satellite":
            why = (
                f"{t.calls} calls to satellite numbers{spent}; "
                f"this account never called them{night}"
            )
            param = "satellite_calls"
        elif sit.kind == "premium":
            why = (
                f"{t.calls} calls to premium-rate numbers{spent}; this account rarely "
                f"calls premium-rate numbers{night}"
            )
            param = "premium_calls"
        else:
            why = (
                f"{t.calls} calls to {where}{spent}; this account never called {sit.subject}{night}"
            )
            param = "new_country_calls"
        th = ctx.settings(self)
        key = {"risk": "risk", "satellite": "risk", "premium": "premium"}.get(
            sit.kind, "new_country"
        )
        return Finding(
            subject=sit.subject,
            subject_kind=sit.subject_kind,
            severity=sit.severity,
            started_at=t.started_at,
            records=t.calls,
            cost=t.cost,
            prior_ids=t.prior(),
            explanation={
                "parameter": param,
                "value": t.calls,
                "threshold": {
                    "warning": th.warning.get(f"{key}_calls"),
                    "critical": th.critical.get(f"{key}_calls"),
                },
                "cost": money(t.cost),
                "silent_hour_calls": sit.silent,
                "risk": sit.risk,
                "why": why,
            },
        )


def _country_code(record: CallRecord) -> str:
    country = record.country or ""
    code = _CODES.get(country)
    if code is None:
        import phonenumbers

        n = phonenumbers.country_code_for_region(country) if len(country) == 2 else 0
        code = _CODES[country] = f"+{n}" if n else ""
    return code


_CODES: dict[str, str] = {}


def _severity(
    sit: _Situation, warning: dict[str, float], critical: dict[str, float]
) -> Severity | None:
    key = {"risk": "risk", "satellite": "risk", "premium": "premium"}.get(sit.kind, "new_country")
    spend = sit.tally.cost

    def hit(th: dict[str, float]) -> bool:
        calls_th = th.get(f"{key}_calls", math.inf)
        spend_th = th.get(f"{key}_spend", math.inf)
        return sit.weight >= calls_th or (spend_th < math.inf and spend >= Decimal(str(spend_th)))

    if hit(critical):
        return "critical"
    if hit(warning):
        return "warning"
    return None


def _rank(sev: Severity | None) -> int:
    return 2 if sev == "critical" else 1 if sev == "warning" else 0
