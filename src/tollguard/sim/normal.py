"""Normal business traffic: accounts of different sizes, a Dutch working week, surprises.

This is what keeps a detector's false-positive rate honest, so it has the shapes real
PBX traffic has: morning and afternoon peaks with a lunch dip, quiet nights, quiet
weekends and public holidays, month-end peaks, repeat contacts, unanswered and busy
calls, international calls for some accounts, the odd toll-free and premium-rate call,
a marketing-campaign day and a business trip to a new country.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from random import Random
from typing import Any

from tollguard.sim.calendar import (
    WEEKDAY_SAMPLER,
    WEEKEND_SAMPLER,
    HourSampler,
    holidays_between,
    is_month_end_peak,
)
from tollguard.sim.calls import (
    ANSWERED,
    BUSY,
    CONGESTION,
    FAILED,
    NO_ANSWER,
    SimCall,
    local_epoch,
    local_midnight,
    ordered,
)
from tollguard.sim.numbers import EU_COUNTRIES, dialed, did_block, national, number

OUT_TRUNK = "carrier-out"
DOMESTIC_IN = "ix-kpn"  # domestic interconnect delivering inbound calls to the DIDs
INTL_IN = "ix-transit"  # international transit interconnect (inbound from abroad)

BUSINESS_NAMES: tuple[str, ...] = (
    "acme-hq", "bakkerij-jansen", "tandarts-de-boer", "van-dijk-logistiek", "notaris-bos",
    "fysio-centrum-west", "garage-visser", "hotel-de-linde", "advocaten-smit", "makelaardij-mulder",
    "drukkerij-de-graaf", "installatiebedrijf-bakker", "huisartsen-oost", "accountants-meijer",
    "bouwbedrijf-hendriks", "bloemen-van-leeuwen", "transport-dekker", "zorggroep-brouwer",
    "it-partners-de-wit", "schoonmaak-dijkstra", "autobedrijf-smits", "verzekeringen-de-jong",
    "kinderopvang-zonnetje", "dierenkliniek-vos", "reisbureau-peters", "uitzendbureau-koster",
    "slagerij-prins", "opticien-huisman", "hoveniers-kok", "gemeentewerken-noord",
    "webshop-klomp", "callcenter-post", "groothandel-kuipers", "brillen-veenstra",
    "incasso-van-beek", "ziekenhuis-apotheek", "camping-de-horst", "restaurant-de-molen",
    "tolkenbureau-wolters", "vastgoed-verhoeven", "ingenieurs-van-vliet", "school-het-baken",
    "kapper-schouten", "fietsen-bosman", "elektro-jacobs", "loodgieter-dam", "thuiszorg-maas",
    "sportschool-fit", "boekhandel-venema", "energie-advies-zwart", "tegelhandel-groen",
    "catering-de-ruiter", "architecten-koning", "muziekschool-lamers", "taxi-centrale-oost",
)  # fmt: skip


@dataclass
class Account:
    """A business account: accountcode, DID block and calling habits."""

    name: str
    display: str
    calls_per_day: float
    dids: list[str]
    saturday: float  # weekend volume as a share of a weekday
    sunday: float
    mobile_share: float
    intl_share: float
    countries: list[str]
    contacts: list[str] = field(default_factory=list)
    month_end: float = 1.2
    inbound_ratio: float = 0.6

    def info(self) -> dict[str, Any]:
        return {
            "kind": "business",
            "display": self.display,
            "calls_per_day": round(self.calls_per_day, 1),
            "dids": [self.dids[0], self.dids[-1]],
            "countries": self.countries,
        }


class Namer:
    """Asterisk-style channel names: ``SIP/<peer>-<8 hex digits>``, one counter per stream."""

    def __init__(self, rng: Random) -> None:
        self.counter = rng.randint(0x100, 0xFFFF)

    def __call__(self, peer: str) -> str:
        self.counter += 1
        return f"SIP/{peer}-{self.counter:08x}"


def display_name(account: str) -> str:
    return " ".join(part.capitalize() if len(part) > 3 else part for part in account.split("-"))


def did_block_size(calls_per_day: float) -> int:
    if calls_per_day < 12:
        return 5
    if calls_per_day < 40:
        return 10
    if calls_per_day < 150:
        return 50
    if calls_per_day < 300:
        return 100
    return 500


def make_account(rng: Random, name: str, calls_per_day: float) -> Account:
    dids = did_block(rng, did_block_size(calls_per_day))
    international = rng.random() < 0.7
    countries = rng.sample(EU_COUNTRIES, rng.randint(1, 3)) if international else []
    if international and rng.random() < 0.35:
        countries.append("US")
    shop = rng.random() < 0.25  # shops, practices and hotels also work on Saturdays
    acc = Account(
        name=name,
        display=display_name(name),
        calls_per_day=calls_per_day,
        dids=dids,
        saturday=rng.uniform(0.35, 0.6) if shop else rng.uniform(0.04, 0.12),
        sunday=rng.uniform(0.1, 0.25) if shop else rng.uniform(0.01, 0.05),
        mobile_share=rng.uniform(0.25, 0.45),
        intl_share=rng.uniform(0.02, 0.12) if international else 0.0,
        countries=countries,
        month_end=rng.uniform(1.1, 1.6),
        inbound_ratio=rng.uniform(0.4, 0.9),
    )
    n_contacts = int(20 + calls_per_day * 0.8)
    acc.contacts = [pick_destination(rng, acc, contacts=False) for _ in range(n_contacts)]
    return acc


def make_accounts(rng: Random, count: int, names: list[str] | None = None) -> list[Account]:
    """``count`` business accounts, sizes spread log-uniformly from 5 to 500 calls a day."""
    pool = list(names or BUSINESS_NAMES)
    rng.shuffle(pool)
    chosen = [
        pool[i] if i < len(pool) else f"{pool[i % len(pool)]}-{i // len(pool) + 1}"
        for i in range(count)
    ]
    sizes = [5.0 * 100 ** ((i + rng.random()) / count) for i in range(count)]
    rng.shuffle(sizes)
    return [make_account(rng, name, size) for name, size in zip(chosen, sizes, strict=True)]


def pick_destination(rng: Random, acc: Account, contacts: bool = True) -> str:
    if contacts and acc.contacts and rng.random() < 0.6:
        # a few contacts get most calls (Zipf-like)
        return acc.contacts[int(len(acc.contacts) * rng.random() ** 2.5)]
    r = rng.random()
    if r < acc.intl_share and acc.countries:
        return number(rng.choice(acc.countries), rng)
    r -= acc.intl_share
    if r < acc.mobile_share:
        return number("NL_MOBILE", rng)
    r -= acc.mobile_share
    if r < 0.02:
        return number("NL_TOLLFREE", rng)
    if r < 0.06:
        return number("NL_NONGEO", rng)
    if r < 0.0625:  # rare legitimate premium-rate call (a helpdesk, a public service line)
        return number("NL_PREMIUM", rng)
    return number("NL_FIXED", rng)


def poisson(rng: Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def talk_seconds(rng: Random, e164: str) -> int:
    if not e164.startswith("+31"):
        median = 150.0
    elif e164.startswith("+316"):
        median = 55.0
    elif e164.startswith(("+31800", "+3190")):
        median = 200.0
    else:
        median = 75.0
    return max(1, min(7200, int(rng.lognormvariate(math.log(median), 1.0))))


def outcome(rng: Random, international: bool) -> tuple[str, int]:
    """(disposition, ring seconds) for a normal call."""
    r = rng.random() + (0.05 if international else 0.0)
    if r < 0.70:
        return ANSWERED, min(45, 2 + int(rng.expovariate(1 / 7)))
    if r < 0.90:
        return NO_ANSWER, rng.randint(12, 45)
    if r < 0.97:
        return BUSY, rng.randint(1, 6)
    if r < 0.995:
        return FAILED, rng.randint(0, 4)
    return CONGESTION, rng.randint(0, 2)


def outbound_call(
    rng: Random, namer: Namer, acc: Account, start: int, callee: str, scenario: str = "normal"
) -> SimCall:
    disposition, ring = outcome(rng, not callee.startswith("+31"))
    answer: int | None = None
    if disposition == ANSWERED:
        answer = start + ring
        end = answer + talk_seconds(rng, callee)
    else:
        end = start + ring
    caller = acc.dids[0] if rng.random() < 0.35 else rng.choice(acc.dids)
    return SimCall(
        start=start,
        answer=answer,
        end=end,
        account=acc.name,
        caller=national(caller),
        callee=dialed(callee),
        caller_e164=caller,
        callee_e164=callee,
        disposition=disposition,
        channel=namer(acc.name),
        dst_channel=namer(OUT_TRUNK),
        clid_name=acc.display,
        scenario=scenario,
    )


def inbound_call(
    rng: Random,
    namer: Namer,
    trunk: str,
    acc: Account,
    start: int,
    caller: str,
    scenario: str = "normal",
) -> SimCall:
    disposition, ring = outcome(rng, False)
    answer: int | None = None
    if disposition == ANSWERED:
        answer = start + ring
        end = answer + talk_seconds(rng, caller)
    else:
        end = start + ring
    did = acc.dids[0] if rng.random() < 0.5 else rng.choice(acc.dids)
    return SimCall(
        start=start,
        answer=answer,
        end=end,
        account=trunk,
        caller=national(caller),
        callee=national(did),
        caller_e164=caller,
        callee_e164=did,
        disposition=disposition,
        channel=namer(trunk),
        dst_channel=namer(acc.name),
        clid_name="",
        context="from-trunk",
        inbound=True,
        scenario=scenario,
    )


@dataclass
class Events:
    """Legitimate surprises, chosen once per dataset and reported in truth.json."""

    campaign: tuple[str, date] | None = None  # account, day with 3x domestic volume
    trip: tuple[str, str, list[date]] | None = None  # account, country, days

    def to_list(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.campaign:
            out.append(
                {
                    "kind": "marketing-campaign",
                    "account": self.campaign[0],
                    "date": self.campaign[1].isoformat(),
                    "why": "one day at about 3x the usual volume, domestic (mostly mobile)",
                }
            )
        if self.trip:
            out.append(
                {
                    "kind": "business-trip",
                    "account": self.trip[0],
                    "country": self.trip[1],
                    "dates": [d.isoformat() for d in self.trip[2]],
                    "why": "a handful of business-hour calls to a country the account never called",
                }
            )
        return out


def choose_events(rng: Random, accounts: list[Account], first: date, days: int) -> Events:
    weekdays = [
        first + timedelta(days=i) for i in range(days) if (first + timedelta(days=i)).weekday() < 4
    ]
    holidays = holidays_between(first, first + timedelta(days=days - 1))
    weekdays = [d for d in weekdays if d not in holidays]
    events = Events()
    if not weekdays or not accounts:
        return events
    mid = [a for a in accounts if 20 <= a.calls_per_day <= 250] or accounts
    events.campaign = (rng.choice(mid).name, rng.choice(weekdays))
    trip_acc = rng.choice(accounts)
    trip_start = rng.choice(weekdays)
    trip_days = [trip_start + timedelta(days=i) for i in range(rng.randint(2, 4))]
    trip_days = [d for d in trip_days if d.weekday() < 5 and d < first + timedelta(days=days)]
    events.trip = (trip_acc.name, rng.choice(["JP", "BR"]), trip_days)
    return events


def day_factor(acc: Account, day: date, holidays: dict[date, str]) -> tuple[float, HourSampler]:
    wd = day.weekday()
    if day in holidays:
        return acc.sunday, WEEKEND_SAMPLER
    if wd == 5:
        return acc.saturday, WEEKEND_SAMPLER
    if wd == 6:
        return acc.sunday, WEEKEND_SAMPLER
    factor = (1.0, 1.05, 1.0, 0.98, 0.85)[wd]
    if is_month_end_peak(day):
        factor *= acc.month_end
    return factor, WEEKDAY_SAMPLER


def day_calls(
    rng: Random,
    namer: Namer,
    acc: Account,
    day: date,
    holidays: dict[date, str],
    events: Events | None,
    intl_callers: bool = True,
) -> list[SimCall]:
    """One local day of an account's traffic: outbound plus inbound via the interconnects."""
    factor, sampler = day_factor(acc, day, holidays)
    noise = rng.lognormvariate(0.0, 0.15)
    calls: list[SimCall] = []
    for _ in range(poisson(rng, acc.calls_per_day * factor * noise)):
        start = local_epoch(day, sampler.second_of_day(rng))
        calls.append(outbound_call(rng, namer, acc, start, pick_destination(rng, acc)))
    if (
        events is not None
        and events.campaign
        and events.campaign[0] == acc.name
        and events.campaign[1] == day
    ):
        for _ in range(poisson(rng, acc.calls_per_day * 2.0)):
            start = local_epoch(day, WEEKDAY_SAMPLER.second_of_day(rng))
            callee = number("NL_MOBILE" if rng.random() < 0.7 else "NL_FIXED", rng)
            calls.append(outbound_call(rng, namer, acc, start, callee))
    if events is not None and events.trip and events.trip[0] == acc.name and day in events.trip[2]:
        for _ in range(rng.randint(1, 4)):
            start = local_epoch(day, rng.randint(9 * 3600, 17 * 3600))
            calls.append(outbound_call(rng, namer, acc, start, number(events.trip[1], rng)))
    for _ in range(poisson(rng, acc.calls_per_day * acc.inbound_ratio * factor * noise)):
        start = local_epoch(day, sampler.second_of_day(rng))
        if intl_callers and acc.countries and rng.random() < 0.08:
            calls.append(
                inbound_call(
                    rng, namer, INTL_IN, acc, start, number(rng.choice(acc.countries), rng)
                )
            )
        else:
            kind = "NL_MOBILE" if rng.random() < 0.45 else "NL_FIXED"
            calls.append(inbound_call(rng, namer, DOMESTIC_IN, acc, start, number(kind, rng)))
    return calls


def normal_stream(
    rng: Random, accounts: list[Account], first: date, days: int, events: Events | None
) -> Iterator[SimCall]:
    """All accounts' normal traffic over the window, in end order."""
    namer = Namer(rng)
    last = first + timedelta(days=days - 1)
    holidays = holidays_between(first, last)
    day_list = [first + timedelta(days=i) for i in range(days)]

    def chunks() -> Iterator[list[SimCall]]:
        for day in day_list:
            out: list[SimCall] = []
            for acc in accounts:
                out.extend(day_calls(rng, namer, acc, day, holidays, events))
            yield out

    bounds = [local_midnight(d + timedelta(days=1)) for d in day_list]
    return ordered(chunks(), bounds)
