"""Calibration: population priors from weeks of an operator's own history, and a report
of what detection would have raised on it (ClearIP's "calibration report").

The history is replayed through the detection engine as configured by the policy, with
nothing refused. Records that took part in a critical finding (a hack in the history)
are left out of what is learned, as the engine itself never learns them: otherwise one
weekend of calls to Timor-Leste would make Timor-Leste "a country the population calls".
A country only one account called gets no share either: the calls of a hack before it
went critical (test calls, the first minutes) are still one account's.
The priors are then learned from the remaining records (``Priors.learn``), each account's
hours in its own time zone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tollguard.cdr.model import CallRecord
from tollguard.detect.engine import Engine
from tollguard.detect.signature import HOURS_PER_WEEK, Priors
from tollguard.policy import Policy

MIN_DAYS = 14  # less history gives a weak hour-of-week shape (one of each weekday)
MIN_ACCOUNTS = 5  # fewer accounts: the "population" is a handful of customers
# below these, priors would describe one account's few hours (not written without force)
TOO_FEW_DAYS = 7
TOO_FEW_ACCOUNTS = 2
# a country is common in the priors only when this many accounts called it (as the online
# population's ``population_accounts``): one account's habit or hack is not the norm
MIN_COUNTRY_ACCOUNTS = 2
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class Calibration:
    """What was learned, from what, and what detection would have raised on it."""

    priors: Priors
    records: int = 0
    learned: int = 0  # records the priors were learned from
    priced: int = 0  # learned records with a cost (the cost per call is learned from them)
    first: datetime | None = None
    last: datetime | None = None
    accounts: set[str] = field(default_factory=set)
    excluded: Counter[str] = field(default_factory=Counter)  # account -> records left out
    by_detector: dict[str, Counter[str]] = field(default_factory=dict)  # severity counts
    by_account: dict[str, Counter[str]] = field(default_factory=dict)
    cautions: list[str] = field(default_factory=list)

    @property
    def days(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return (self.last - self.first).total_seconds() / 86400.0

    def busiest_hours(self, n: int = 3) -> list[str]:
        """The hours of the week with the most calls (Mon 10:00 ...), busiest first."""
        order = sorted(range(HOURS_PER_WEEK), key=lambda h: -self.priors.shape[h])
        return [_slot_name(h) for h in order[:n]]

    def accounts_by_alerts(self) -> list[tuple[str, Counter[str]]]:
        """Accounts with alerts, most critical first, then most warnings."""
        return sorted(
            self.by_account.items(),
            key=lambda kv: (-kv[1]["critical"], -kv[1]["warning"], kv[0]),
        )

    def summary(self) -> dict[str, Any]:
        """The learned priors in words a person can check."""
        p = self.priors
        top = sorted(p.country_share.items(), key=lambda kv: -kv[1])[:8]
        types = sorted(p.number_type_share.items(), key=lambda kv: -kv[1])[:6]
        return {
            "calls_per_hour_median_account": round(p.level, 4),
            "cost_per_call_mean": round(p.cost_mean, 4),
            "cost_per_call_sd": round(p.cost_sd, 4),
            "answered_seconds_mean": round(p.duration_mean, 1),
            "busiest_hours": self.busiest_hours(),
            "night_share": round(_night_share(p), 4),
            "weekend_share": round(_weekend_share(p), 4),
            "countries": {c: round(v, 4) for c, v in top},
            "number_types": {t: round(v, 4) for t, v in types},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "learned_records": self.learned,
            "priced_records": self.priced,
            "excluded_records": sum(self.excluded.values()),
            "excluded_by_account": dict(self.excluded.most_common()),
            "accounts": len(self.accounts),
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "days": round(self.days, 2),
            "alerts_by_detector": {k: dict(v) for k, v in sorted(self.by_detector.items())},
            "alerts_by_account": {k: dict(v) for k, v in self.accounts_by_alerts()},
            "learned": self.summary(),
            "cautions": self.cautions,
            "too_little": self.too_little(),
        }

    def too_little(self) -> str | None:
        """Why these priors should not be used (None when they may): less than a week or
        a single account would make a few hours of one customer everyone's normal."""
        if self.learned == 0:
            return "no record could be learned"
        if self.days < TOO_FEW_DAYS:
            return f"only {self.days:.1f} days of history (at least {TOO_FEW_DAYS}, better 14-28)"
        if len(self.accounts) < TOO_FEW_ACCOUNTS:
            return (
                f"only {len(self.accounts)} account (at least {TOO_FEW_ACCOUNTS}, better 5 or more)"
            )
        return None


def calibrate(records: Iterable[CallRecord], policy: Policy) -> Calibration:
    """Replay ``records`` (event order) through detection and learn priors from the
    records that took part in no critical finding."""
    engine = Engine(policy)
    cal = Calibration(Priors.default())

    def clean(stream: Iterable[CallRecord]) -> Iterator[CallRecord]:
        for record in stream:
            cal.records += 1
            cal.accounts.add(record.account)
            if cal.first is None or record.end < cal.first:
                cal.first = record.end
            if cal.last is None or record.end > cal.last:
                cal.last = record.end
            engine.process(record)
            if engine.context(record.account).clean:
                cal.learned += 1
                cal.priced += record.cost is not None
                yield record
            else:
                cal.excluded[record.account] += 1

    zones: dict[str, str] = {}

    def zone_of(account: str) -> str:
        zone = zones.get(account)
        if zone is None:
            zone = zones[account] = policy.account(account).timezone
        return zone

    cal.priors = Priors.learn(clean(records), zone_of, MIN_COUNTRY_ACCOUNTS)
    engine.finish()
    for alert in engine.alerts:
        cal.by_detector.setdefault(alert.detector, Counter({"warning": 0, "critical": 0}))[
            alert.severity
        ] += 1
        cal.by_account.setdefault(alert.account, Counter({"warning": 0, "critical": 0}))[
            alert.severity
        ] += 1
    cal.cautions = _cautions(cal)
    return cal


def _cautions(cal: Calibration) -> list[str]:
    out: list[str] = []
    if cal.learned == 0:
        out.append("no record could be learned: these are the built-in default priors")
        return out
    if cal.days < MIN_DAYS:
        out.append(
            f"only {cal.days:.1f} days of history: the hour-of-week shape needs at least "
            f"{MIN_DAYS} (two of each weekday); calibrate on 2-4 weeks"
        )
    if len(cal.accounts) < MIN_ACCOUNTS:
        out.append(
            f"only {len(cal.accounts)} account(s): the priors describe these few, not a "
            "population; new accounts unlike them will be judged by them"
        )
    if cal.priced == 0:
        out.append("no call was priced (no rate deck?): the cost per call is the built-in default")
    if cal.excluded:
        out.append(
            f"{sum(cal.excluded.values()):,} records in critical findings were not learned "
            f"({len(cal.excluded)} account(s)); look at those alerts before going live"
        )
    return out


def _slot_name(slot: int) -> str:
    return f"{_DAYS[slot // 24]} {slot % 24:02d}:00"


def _night_share(p: Priors) -> float:
    """Share of the week's calls between 00:00 and 07:00 local."""
    total = sum(p.shape) or 1.0
    return sum(p.shape[h] for h in range(HOURS_PER_WEEK) if h % 24 < 7) / total


def _weekend_share(p: Priors) -> float:
    total = sum(p.shape) or 1.0
    return sum(p.shape[5 * 24 :]) / total
