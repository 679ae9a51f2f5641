"""The fraud scenarios of the brief, each with its parameters drawn from the seed.

Every scenario returns its calls (in end order) and what truth.json should say about
it. Parameters (onset hour, channel count, volumes, target numbers) vary with the seed,
so tests that pass for one seed pass for the pattern, not for one dataset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from random import Random
from typing import Any

from tollguard.sim.calendar import holidays_between
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
    sort_calls,
)
from tollguard.sim.normal import (
    INTL_IN,
    OUT_TRUNK,
    Account,
    Namer,
    make_account,
    poisson,
)
from tollguard.sim.numbers import dialed, national, number

SCENARIOS: tuple[str, ...] = ("pbx-hack", "voip-hack", "prs-pumping", "wangiri", "sequential")
PRS_ACCOUNT = "prs-carrier"
PRS_WEEKEND_CALLS = 470_016  # MTC v. BT: calls in one weekend at scale 1.0
PRS_SIMS = 609


@dataclass
class Window:
    first: date
    days: int
    taken: set[date] = field(default_factory=set)  # days already used by another scenario

    @property
    def last(self) -> date:
        return self.first + timedelta(days=self.days - 1)

    @property
    def end_epoch(self) -> int:
        return local_midnight(self.first + timedelta(days=self.days))

    def day_list(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.days)]

    def pick_friday(self, rng: Random) -> date:
        """A Friday after some history, with the weekend inside the window if possible."""
        fridays = [d for d in self.day_list() if d.weekday() == 4]
        for ok in (
            lambda f: (
                f >= self.first + timedelta(days=self.days // 3)
                and f + timedelta(days=3) <= self.last
            ),
            lambda f: f + timedelta(days=3) <= self.last,
            lambda f: True,
        ):
            choice = [f for f in fridays if ok(f) and f not in self.taken]
            if choice:
                friday = rng.choice(choice)
                self.taken.update(friday + timedelta(days=i) for i in range(4))
                return friday
        return self.first + timedelta(days=self.days // 2)

    def pick_day(self, rng: Random, weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)) -> date:
        """A day (preferably after a third of the window, not used by another scenario)."""
        holidays = holidays_between(self.first, self.last)
        days = [d for d in self.day_list() if d.weekday() in weekdays and d not in holidays]
        for ok in (lambda d: d >= self.first + timedelta(days=self.days // 3), lambda d: True):
            choice = [d for d in days if ok(d) and d not in self.taken and d < self.last]
            if choice:
                day = rng.choice(choice)
                self.taken.update({day, day + timedelta(days=1)})
                return day
        return self.first + timedelta(days=self.days // 2)


@dataclass
class ScenarioRun:
    """A scenario's calls and its ground truth (counts and ids are added while writing)."""

    name: str
    account: str
    stream: Iterator[SimCall]
    info: dict[str, Any]
    victims: list[Account] = field(default_factory=list)  # business accounts it needs, with history
    carriers: dict[str, dict[str, Any]] = field(default_factory=dict)  # non-business accounts
    limits: dict[str, str] = field(default_factory=dict)  # policy.toml limits for the account


def _answered(start: int, ring: int, talk: int) -> tuple[int, int]:
    return start + ring, start + ring + talk


def _hacked_call(
    namer: Namer,
    acc: Account,
    start: int,
    callee: str,
    caller: str | None,
    disposition: str,
    ring: int,
    talk: int,
    scenario: str,
    caller_text: str | None = None,
) -> SimCall:
    answer = start + ring if disposition == ANSWERED else None
    end = start + ring + (talk if disposition == ANSWERED else 0)
    return SimCall(
        start=start,
        answer=answer,
        end=end,
        account=acc.name,
        caller=caller_text if caller_text is not None else national(caller or acc.dids[0]),
        callee=dialed(callee),
        caller_e164=caller,
        callee_e164=callee,
        disposition=disposition,
        channel=namer(acc.name),
        dst_channel=namer(OUT_TRUNK),
        clid_name=acc.display if caller_text is None else "",
        scenario=scenario,
    )


# -- PBX hack (KPN v. NEC) --------------------------------------------------------------------


def pbx_hack(rng: Random, win: Window) -> ScenarioRun:
    acc = make_account(rng, "hoek-techniek", rng.uniform(60, 200))
    namer = Namer(rng)
    friday = win.pick_friday(rng)
    onset = local_epoch(friday, rng.randint(17 * 3600 + 1800, 23 * 3600 + 1800))
    monday = friday + timedelta(days=3)
    end_at = min(local_epoch(monday, rng.randint(7 * 3600 + 1800, 9 * 3600 + 1800)), win.end_epoch)
    targets = [number("TL", rng) for _ in range(rng.randint(1, 5))]
    hacked_ext = rng.sample(acc.dids, min(2, len(acc.dids)))
    channels = rng.randint(10, 30)
    calls: list[SimCall] = []
    tests = rng.randint(2, 5)
    for t in sorted(rng.sample(range(20 * 60, 6 * 3600), tests), reverse=True):
        disposition = ANSWERED if rng.random() < 0.6 else NO_ANSWER
        calls.append(
            _hacked_call(
                namer,
                acc,
                onset - t,
                rng.choice(targets),
                rng.choice(hacked_ext),
                disposition,
                rng.randint(3, 10),
                rng.randint(3, 25),
                "pbx-hack",
            )
        )
    # The attacker runs all channels in bursts (45 min to 3 h) with pauses between them,
    # from the onset until someone notices on Monday morning.
    bursts: list[tuple[int, int]] = []
    t = onset
    while t < end_at:
        length = rng.randint(45 * 60, 180 * 60)
        bursts.append((t, min(end_at, t + length)))
        t += length + rng.randint(3600, 8 * 3600)
    for burst_from, burst_to in bursts:
        for _ in range(channels):
            _pbx_channel(
                rng,
                namer,
                acc,
                calls,
                burst_from + rng.randint(0, 600),
                burst_to,
                targets,
                hacked_ext,
            )
    info = {
        "story": "KPN v. NEC (ECLI:NL:RBMNE:2014:2617): hacked business PBX calling Timor-Leste",
        "subject_numbers": sorted(targets),
        "subject_country": "TL",
        "params": {
            "channels": channels,
            "test_calls": tests,
            "weekend_of": friday.isoformat(),
            "bursts": len(bursts),
        },
    }
    return ScenarioRun(
        "pbx-hack",
        acc.name,
        iter(sort_calls(calls)),
        info,
        victims=[acc],
        limits={"max_spend_per_day": "500.00"},
    )


def _pbx_channel(
    rng: Random,
    namer: Namer,
    acc: Account,
    calls: list[SimCall],
    start: int,
    stop: int,
    targets: list[str],
    hacked_ext: list[str],
) -> None:
    while start < stop:
        r = rng.random()
        disposition = ANSWERED if r < 0.88 else NO_ANSWER if r < 0.95 else FAILED
        talk = max(20, min(3600, int(rng.lognormvariate(math.log(330), 0.5))))
        ring = rng.randint(2, 8) if disposition != FAILED else rng.randint(0, 2)
        call = _hacked_call(
            namer,
            acc,
            start,
            rng.choice(targets),
            rng.choice(hacked_ext),
            disposition,
            ring,
            talk,
            "pbx-hack",
        )
        calls.append(call)
        start = call.end + rng.randint(1, 40)


# -- hacked VoIP server (Maastricht) ----------------------------------------------------------


def voip_hack(rng: Random, win: Window) -> ScenarioRun:
    acc = make_account(rng, "kapsalon-maas", rng.uniform(1.5, 4.0))
    acc.countries, acc.intl_share = [], 0.0
    namer = Namer(rng)
    day = win.pick_day(rng, (0, 1, 2, 3))
    nights = rng.randint(1, 3)
    total = rng.randint(140, 165)
    targets = [number("ZW" if rng.random() < 0.5 else "SO", rng) for _ in range(rng.randint(6, 15))]
    callers = [number("RO", rng) for _ in range(rng.randint(2, 5))]
    calls: list[SimCall] = []
    per_night = [total // nights + (1 if i < total % nights else 0) for i in range(nights)]
    for night, n in enumerate(per_night):
        d = day + timedelta(days=night)
        begin = rng.randint(22 * 3600 + 1800, 24 * 3600 + 3600)
        finish = rng.randint(28 * 3600, 29 * 3600 + 1800)
        for sod in sorted(rng.randint(begin, finish) for _ in range(n)):
            r = rng.random()
            disposition = (
                ANSWERED if r < 0.68 else NO_ANSWER if r < 0.85 else BUSY if r < 0.93 else FAILED
            )
            c = rng.random()
            if c < 0.55:
                caller: str | None = rng.choice(callers)
                text = caller
            elif c < 0.75:
                caller, text = None, "anonymous"
            elif c < 0.9:
                caller, text = None, rng.choice(["1000", "100", "0000000000"])
            else:
                caller, text = acc.dids[0], None
            talk = max(10, min(2400, int(rng.lognormvariate(math.log(240), 0.7))))
            ring = rng.randint(4, 30) if disposition != FAILED else rng.randint(0, 3)
            calls.append(
                _hacked_call(
                    namer,
                    acc,
                    local_epoch(d, sod),
                    rng.choice(targets),
                    caller,
                    disposition,
                    ring,
                    talk,
                    "voip-hack",
                    caller_text=text,
                )
            )
    info = {
        "story": "Maastricht VoIP server hack: ~150 night calls to Zimbabwe and Somalia",
        "subject_numbers": sorted(set(targets)),
        "subject_country": sorted({"ZW" if t.startswith("+263") else "SO" for t in targets}),
        "params": {"nights": nights, "calls": total, "odd_callers": sorted(callers)},
    }
    return ScenarioRun(
        "voip-hack",
        acc.name,
        iter(sort_calls(calls)),
        info,
        victims=[acc],
        limits={"max_spend_per_day": "20.00", "max_spend_per_month": "100.00"},
    )


# -- sequential range dialing, then a pump ----------------------------------------------------


def sequential(rng: Random, win: Window) -> ScenarioRun:
    acc = make_account(rng, "architecten-de-vries", rng.uniform(15, 60))
    namer = Namer(rng)
    day = win.pick_day(rng)
    start = local_epoch(day, rng.randint(1800, 3 * 3600 + 1800))
    block = f"+25261{rng.randint(20000, 99999)}"
    tests = rng.randint(30, 80)
    live = set(rng.sample(range(tests), rng.randint(2, 4)))
    ext = rng.choice(acc.dids)
    calls: list[SimCall] = []
    t = start
    for i in range(tests):
        callee = f"{block}{i:02d}"
        if i in live:
            call = _hacked_call(
                namer,
                acc,
                t,
                callee,
                ext,
                ANSWERED,
                rng.randint(2, 6),
                rng.randint(3, 12),
                "sequential",
            )
        else:
            disposition = FAILED if rng.random() < 0.6 else NO_ANSWER
            call = _hacked_call(
                namer, acc, t, callee, ext, disposition, rng.randint(1, 10), 0, "sequential"
            )
        calls.append(call)
        t = call.end + rng.randint(2, 20)
    pump_from = t + rng.randint(5 * 60, 40 * 60)
    pump_to = pump_from + rng.randint(2 * 3600, 6 * 3600)
    targets = [f"{block}{i:02d}" for i in sorted(live)]
    channels = rng.randint(4, 12)
    for _ in range(channels):
        s = pump_from + rng.randint(0, 600)
        while s < pump_to:
            talk = max(30, min(3600, int(rng.lognormvariate(math.log(420), 0.6))))
            call = _hacked_call(
                namer,
                acc,
                s,
                rng.choice(targets),
                ext,
                ANSWERED,
                rng.randint(2, 8),
                talk,
                "sequential",
            )
            calls.append(call)
            s = call.end + rng.randint(1, 30)
    info = {
        "story": "range dialing: consecutive B-numbers tested, then the live ones pumped",
        "subject_numbers": targets,
        "subject_prefix": block,
        "subject_country": "SO",
        "params": {"test_calls": tests, "first_tested": f"{block}00", "channels": channels},
    }
    return ScenarioRun("sequential", acc.name, iter(sort_calls(calls)), info, victims=[acc])


# -- Wangiri -----------------------------------------------------------------------------------


def wangiri(rng: Random, win: Window, accounts: list[Account]) -> ScenarioRun:
    namer = Namer(rng)
    kind = rng.choice(["TL", "SO", "SAT_882", "SAT_881", "ZW"])
    sources = sorted({number(kind, rng) for _ in range(rng.randint(2, 6))})
    by_size = sorted(accounts, key=lambda a: (-len(a.dids), a.name))
    victims = by_size[: rng.randint(2, 4)]
    day = win.pick_day(rng)
    onset = local_epoch(day, rng.randint(10 * 3600, 19 * 3600))
    span = rng.randint(30 * 60, 120 * 60)
    callback_p = rng.uniform(0.04, 0.08)
    targets = [(acc, did) for acc in victims for did in acc.dids]
    rings: list[tuple[int, Account, str]] = []
    for acc, did in targets:
        for _ in range(1 if rng.random() < 0.8 else 2):
            rings.append((onset + rng.randint(0, span), acc, did))
    calls: list[SimCall] = []
    callbacks = 0
    for start, acc, did in sorted(rings, key=lambda r: (r[0], r[2])):
        src = rng.choice(sources)
        r = rng.random()
        if r < 0.9:
            disposition, answer, end = NO_ANSWER, None, start + rng.randint(1, 4)
        elif r < 0.97:
            disposition = ANSWERED
            answer = start + rng.randint(1, 3)
            end = answer + rng.randint(0, 2)
        else:
            disposition, answer, end = BUSY, None, start + rng.randint(0, 2)
        calls.append(
            SimCall(
                start=start,
                answer=answer,
                end=end,
                account=INTL_IN,
                caller=src,
                callee=national(did),
                caller_e164=src,
                callee_e164=did,
                disposition=disposition,
                channel=namer(INTL_IN),
                dst_channel=namer(acc.name),
                context="from-trunk",
                inbound=True,
                scenario="wangiri",
            )
        )
        if rng.random() < callback_p:
            for k in range(1 if rng.random() < 0.8 else 2):
                back = end + int(rng.lognormvariate(math.log(1200), 1.0)) + k * rng.randint(60, 900)
                talk = max(10, min(1200, int(rng.lognormvariate(math.log(90), 0.8))))
                calls.append(
                    SimCall(
                        start=back,
                        answer=back + rng.randint(2, 8),
                        end=0,
                        account=acc.name,
                        caller=national(did),
                        callee=dialed(src),
                        caller_e164=did,
                        callee_e164=src,
                        disposition=ANSWERED,
                        channel=namer(acc.name),
                        dst_channel=namer(OUT_TRUNK),
                        clid_name=acc.display,
                        scenario="wangiri",
                    )
                )
                calls[-1].end = (calls[-1].answer or back) + talk
                callbacks += 1
    info = {
        "story": "Wangiri: one-ring calls from an expensive range, then callbacks from victims",
        "subject_numbers": sources,
        "subject_country": {"TL": "TL", "SO": "SO", "ZW": "ZW"}.get(kind, "001"),
        "victim_accounts": sorted(a.name for a in victims),
        "params": {"rings": len(rings), "callbacks": callbacks, "span_s": span},
    }
    return ScenarioRun("wangiri", INTL_IN, iter(sort_calls(calls)), info)


# -- PRS pumping (MTC v. BT) -------------------------------------------------------------------


def prs_pumping(rng: Random, win: Window, scale: float) -> ScenarioRun:
    """Call-generator traffic to one premium-rate number, seen by the range holder's carrier.

    Modelling choice: every call to the carrier's premium-rate numbers is booked on the
    terminating trunk account ``prs-carrier`` (the number-range holder's trunk), so the
    pumped number and the carrier's normal premium-rate numbers share one account.
    """
    namer = Namer(rng)
    normal_numbers = [number("NL_PREMIUM", rng) for _ in range(rng.randint(5, 8))]
    target = f"+319091{rng.randint(100000, 999999)}"
    friday = win.pick_friday(rng)
    onset = local_epoch(friday, rng.randint(17 * 3600, 22 * 3600))
    end_at = min(
        local_epoch(friday + timedelta(days=3), rng.randint(7 * 3600, 10 * 3600)), win.end_epoch
    )
    n_sims = max(12, round(rng.randint(585, 630) * min(1.0, math.sqrt(scale))))
    wanted = max(n_sims, round(PRS_WEEKEND_CALLS * scale * rng.uniform(0.97, 1.03)))
    block = rng.randint(1, 5) * 10**7 + rng.randint(100, 999) * 10**4
    first_sim = rng.randint(0, 9999 - int(n_sims * 1.2))
    sim_numbers = sorted(rng.sample(range(first_sim, first_sim + int(n_sims * 1.2)), n_sims))
    sims = [f"+316{block + s:08d}" for s in sim_numbers]
    per_sim_gap = max(1.0, (end_at - onset) * n_sims / wanted - 14.0)

    baseline_rate = {num: rng.uniform(1.0, 25.0) for num in normal_numbers}
    baseline_rate[target] = rng.uniform(0.1, 0.3)

    def baseline(day: date) -> list[SimCall]:
        out: list[SimCall] = []
        for num, rate in baseline_rate.items():
            for _ in range(poisson(rng, rate * (0.7 if day.weekday() >= 5 else 1.0))):
                start = local_epoch(day, rng.randint(7 * 3600, 24 * 3600 - 1))
                caller = number("NL_MOBILE" if rng.random() < 0.6 else "NL_FIXED", rng)
                if rng.random() < 0.88:
                    answer: int | None = start + rng.randint(1, 4)
                    end = (answer or start) + max(5, int(rng.lognormvariate(math.log(180), 0.9)))
                    disposition = ANSWERED
                else:
                    answer, end, disposition = None, start + rng.randint(3, 30), NO_ANSWER
                out.append(_prs_call(namer, start, answer, end, caller, num, disposition, "normal"))
        return out

    next_call = [onset + rng.uniform(0, per_sim_gap + 14) for _ in sims]

    def chunks() -> Iterator[list[SimCall]]:
        for day in win.day_list():
            day_end = local_midnight(day + timedelta(days=1))
            base = baseline(day)
            for hour_end in range(local_midnight(day) + 3600, day_end + 1, 3600):
                out = [c for c in base if hour_end - 3600 <= c.start < hour_end]
                if hour_end > onset and hour_end - 3600 < end_at:
                    stop = min(hour_end, end_at)
                    for i, caller in enumerate(sims):
                        t = next_call[i]
                        while t < stop:
                            start = int(t)
                            r = rng.random()
                            if r < 0.985:
                                answer: int | None = start + rng.randint(1, 3)
                                billsec = (
                                    rng.choice((11, 12))
                                    if rng.random() < 0.96
                                    else rng.randint(3, 60)
                                )
                                end, disposition = (answer or start) + billsec, ANSWERED
                            else:
                                answer, end = None, start + rng.randint(0, 5)
                                disposition = CONGESTION if r < 0.995 else FAILED
                            out.append(
                                _prs_call(
                                    namer,
                                    start,
                                    answer,
                                    end,
                                    caller,
                                    target,
                                    disposition,
                                    "prs-pumping",
                                )
                            )
                            t = end + rng.expovariate(1.0 / per_sim_gap)
                        next_call[i] = t
                yield out

    bounds = [
        h
        for day in win.day_list()
        for h in range(
            local_midnight(day) + 3600, local_midnight(day + timedelta(days=1)) + 1, 3600
        )
    ]
    info = {
        "story": "MTC v. BT (ECLI:NL:RBAMS:2011:10553): call generator pumping one 0909 number",
        "subject_numbers": [target],
        "subject_country": "NL",
        "normal_premium_numbers": sorted(normal_numbers),
        "modelling": (
            "calls to the carrier's premium-rate numbers are booked on the terminating trunk "
            "account 'prs-carrier' (the number-range holder); callers are prepaid SIMs"
        ),
        "params": {
            "sims": n_sims,
            "sim_block": f"+316{block // 10**4:04d}",
            "weekend_of": friday.isoformat(),
            "target_calls": wanted,
        },
    }
    carriers = {
        PRS_ACCOUNT: {"kind": "carrier", "role": "premium-rate range holder trunk (terminating)"}
    }
    return ScenarioRun(
        "prs-pumping", PRS_ACCOUNT, ordered(chunks(), bounds), info, carriers=carriers
    )


def _prs_call(
    namer: Namer,
    start: int,
    answer: int | None,
    end: int,
    caller: str,
    callee: str,
    disposition: str,
    scenario: str,
) -> SimCall:
    return SimCall(
        start=start,
        answer=answer,
        end=end,
        account=PRS_ACCOUNT,
        caller=national(caller),
        callee=national(callee),
        caller_e164=caller,
        callee_e164=callee,
        disposition=disposition,
        channel=namer("mobile-ix"),
        dst_channel=namer("prs-platform"),
        context="from-mobile",
        inbound=True,
        scenario=scenario,
    )
