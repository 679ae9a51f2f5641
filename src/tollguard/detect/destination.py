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
Countries common in the population learned online by the engine (``population_share``
1 % of account-days, called by ``population_accounts`` 2 other accounts; see
``population``) are known too, again never for high-risk ranges.

"New country" needs a basis to judge by: the account's own history (at least
``options.min_history_hours``, 24), calibrated priors, or an online population that has
learned from a whole day and at least ``options.population_basis_account_days`` (10)
closed account-days. Without one (the first day of data, no calibration) an ordinary
foreign country is not called new; high-risk ranges, satellite and premium rate are
judged from the first call.

Tuning records from false-positive cases (docs/cases.md): ``known_countries`` (also
high-risk ones), ``known_number_types``, ``known_numbers`` and ``known_prefixes`` (the
callee starts with one) make those destinations known for the account.

On critical, enforcement blocks the destination (the country or number type) for this
account, not the account (block scope ``"destination"``).

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
from typing import Any, ClassVar

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import Severity
from tollguard.detect.base import (
    AccountContext,
    BaseDetector,
    BlockScope,
    Finding,
    SubjectKind,
    Tally,
    money,
    thresholds,
)
from tollguard.detect.unusual_hours import SILENT_FRACTION

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


DESTINATION_BLOCK: BlockScope = "destination"  # the country / number type, for this account
_WATCHED_TYPES = frozenset({"PREMIUM_RATE", "SATELLITE"})


@dataclass(slots=True, frozen=True)
class _Prepared:
    window_s: float
    known_weight: float
    common_share: float
    population_share: float
    population_accounts: int
    min_history_hours: int
    population_basis: float
    premium_known_weight: float
    silent_weight: float
    known_countries: frozenset[str]
    known_types: frozenset[str]
    known_numbers: frozenset[str]
    known_prefixes: tuple[str, ...]


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
        "population_share": 0.01,
        "population_accounts": 2,
        "min_history_hours": 24,
        "population_basis_account_days": 10,
        "premium_known_weight": 3.0,
        "silent_weight": 2.0,
        "known_countries": [],
        "known_number_types": [],
        "known_numbers": [],
        "known_prefixes": [],
    }

    def _prepare(self, ctx: AccountContext) -> _Prepared:
        settings = ctx.settings(self)
        prep = settings.prepared
        if prep is None:
            o = settings.options
            prep = settings.prepared = _Prepared(
                window_s=float(o["window_hours"]) * 3600.0,
                known_weight=float(o["known_weight"]),
                common_share=float(o["common_share"]),
                population_share=float(o["population_share"]),
                population_accounts=int(o["population_accounts"]),
                min_history_hours=int(o["min_history_hours"]),
                population_basis=float(o["population_basis_account_days"]),
                premium_known_weight=float(o["premium_known_weight"]),
                silent_weight=float(o["silent_weight"]),
                known_countries=frozenset(str(c).upper() for c in o["known_countries"]),
                known_types=frozenset(str(t).upper() for t in o["known_number_types"]),
                known_numbers=frozenset(str(n) for n in o["known_numbers"]),
                known_prefixes=tuple(str(p) for p in o["known_prefixes"]),
            )
        assert isinstance(prep, _Prepared)
        return prep

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        country = record.country
        ntype = record.number_type or ""
        home = ctx.home
        risk = record.risk
        # cheap exit: a domestic, ordinary call concerns no destination situation
        if (country == home or not country) and not risk and ntype not in _WATCHED_TYPES:
            return []
        prep = self._prepare(ctx)
        if prep.known_numbers or prep.known_prefixes:
            number = record.callee_e164 or record.callee
            if number in prep.known_numbers or (
                prep.known_prefixes and number.startswith(prep.known_prefixes)
            ):
                return []  # a tuning record: this number (range) is known for this account
        sig = ctx.sig
        kind: str | None = None
        subject = ""
        subject_kind: SubjectKind = "country"
        known_country = bool(country) and (
            country in prep.known_countries
            or sig.countries.get(country or "", 0.0) >= prep.known_weight
        )
        if (
            ((risk and country != home) or ntype == "SATELLITE")
            and not known_country
            and ntype not in prep.known_types
        ):
            kind = "risk" if risk else "satellite"
            subject = country or ntype
        if (
            kind is None
            and country
            and country != home
            and not known_country
            and not self._common(country, ctx, prep)
            and self._can_judge_new(ctx, prep)
        ):
            kind, subject = "new_country", country
        if kind is None and ntype == "PREMIUM_RATE" and ntype not in prep.known_types:
            learned = sig.types.get(ntype, 0.0)
            if learned < prep.premium_known_weight:
                kind, subject, subject_kind = "premium", ntype, "number_type"
        if kind is None:
            return []
        table: dict[str, _Situation] | None = ctx.state.get(self.name)
        if table is None:
            table = ctx.state[self.name] = {}
        sit = table.get(subject)
        if sit is not None and ctx.end_ts - sit.tally.last_ts > prep.window_s:
            sit = None
        if sit is None:
            sit = table[subject] = _Situation(kind, subject, subject_kind, Tally(record.start))
            if len(table) > 256:  # bounded: drop the stalest situation
                stalest = min(table, key=lambda k: table[k].tally.last_ts)
                table.pop(stalest, None)
        silent = ctx.silent(SILENT_FRACTION)
        sit.tally.add(record, ctx)
        sit.silent += int(silent)
        sit.weight += prep.silent_weight if silent else 1.0
        sit.risk = sit.risk or risk
        settings = ctx.settings(self)
        sev = _severity(sit, settings.warning, settings.critical)
        if _rank(sev) > _rank(sit.severity):
            sit.severity = sev
        return [self._finding(sit, ctx, record)]

    @staticmethod
    def _can_judge_new(ctx: AccountContext, prep: _Prepared) -> bool:
        """Is there a basis to call a (not high-risk) country new for this account: its
        own history, calibrated priors, or a population that has seen a whole day and
        enough account-days to know which countries are common? On the first day of data
        there is none, and every account's first call to a neighbouring country is not
        news."""
        if ctx.sig.history_hours() >= prep.min_history_hours or ctx.sig.priors.country_share:
            return True
        pop = ctx.population
        return pop is not None and pop.has_seen(prep.population_basis, ctx.end_ts)

    @staticmethod
    def _common(country: str, ctx: AccountContext, prep: _Prepared) -> bool:
        """Is a (not high-risk) country commonly called by the population? From the
        calibration priors, or learned online from the other accounts' traffic."""
        if ctx.sig.priors.country_share.get(country, 0.0) >= prep.common_share:
            return True
        pop = ctx.population
        if pop is None:
            return False
        own_today = ctx.sig.day_countries.get(country, 0) > 0
        return bool(
            pop.common(
                country, ctx.account, own_today, prep.population_share, prep.population_accounts
            )
        )

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
        calls = f"{t.calls} call" if t.calls == 1 else f"{t.calls} calls"
        if sit.kind == "risk":
            why = (
                f"{calls} to {where}{spent}, a high-risk destination "
                f"({sit.risk}); this account never called {sit.subject}{night}"
            )
            param = "high_risk_calls"
        elif sit.kind == "satellite":
            why = f"{calls} to satellite numbers{spent}; this account never called them{night}"
            param = "satellite_calls"
        elif sit.kind == "premium":
            why = (
                f"{calls} to premium-rate numbers{spent}; this account rarely "
                f"calls premium-rate numbers{night}"
            )
            param = "premium_calls"
        else:
            why = f"{calls} to {where}{spent}; this account never called {sit.subject}{night}"
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
            block=DESTINATION_BLOCK,
            explanation={
                "parameter": param,
                "value": t.calls,
                "threshold": thresholds(th, f"{key}_calls"),
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
    spend = sit.tally.cost_e4

    def hit(th: dict[str, float]) -> bool:
        calls_th = th.get(f"{key}_calls", math.inf)
        spend_th = th.get(f"{key}_spend", math.inf)
        return sit.weight >= calls_th or (spend_th < math.inf and spend >= spend_th * 10000)

    if hit(critical):
        return "critical"
    if hit(warning):
        return "warning"
    return None


def _rank(sev: Severity | None) -> int:
    return 2 if sev == "critical" else 1 if sev == "warning" else 0
