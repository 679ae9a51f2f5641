"""Engine behaviour on small hand-made traffic: dedup, escalation, report-only, switches,
limits and enforcement, and the detectors that need no history."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest

from tollguard.cdr.model import CallRecord
from tollguard.detect.base import Overlap
from tollguard.detect.engine import Engine
from tollguard.detect.sequential import longest_run

from .helpers import T0, by_end, call, policy, run

TL = "+67077123456"


def _tl_calls(account: str, n: int, start_hour: int = 2, gap_s: int = 90) -> list[CallRecord]:
    t = T0 + timedelta(days=7, hours=start_hour)
    return [
        call(account, f"+670771234{i % 10:02d}", t + timedelta(seconds=i * gap_s), talk=60)
        for i in range(n)
    ]


def _office_history(account: str, days: int = 7, per_day: int = 20) -> list[CallRecord]:
    out = []
    for d in range(days):
        day = T0 + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for i in range(per_day):
            t = day + timedelta(hours=8, minutes=i * 25)
            out.append(call(account, f"+3120{5550000 + d * 100 + i}", t, talk=120))
    return out


def test_escalation_keeps_one_alert_id() -> None:
    eng = Engine(policy())
    recs = by_end(_office_history("acme") + _tl_calls("acme", 6, start_hour=11))
    emitted = run(eng, recs)
    dest = [a for a in emitted if a.detector == "destination"]
    assert [a.severity for a in dest] == ["warning", "critical"]
    assert dest[0].id == dest[1].id
    assert dest[1].escalated_at is not None and dest[0].escalated_at is None
    final = [a for a in eng.alerts if a.detector == "destination"]
    assert len(final) == 1
    assert final[0].records == 6
    assert final[0].evidence.total == 6 and len(final[0].evidence.record_ids) == 6
    assert final[0].started_at == recs[-6].start
    assert "Timor-Leste (+670)" in final[0].explanation["why"]


def test_replay_is_deterministic() -> None:
    recs = by_end(_office_history("acme") + _tl_calls("acme", 30))
    a = [x.to_dict() for x in run(Engine(policy()), recs)]
    b = [x.to_dict() for x in run(Engine(policy()), recs)]
    assert a == b and a


def test_detector_switched_off_per_account() -> None:
    pol = policy({"accounts": {"acme": {"detectors": {"destination": {"enabled": False}}}}})
    recs = by_end(
        _office_history("acme")
        + _tl_calls("acme", 5)
        + _office_history("beta")
        + _tl_calls("beta", 5)
    )
    eng = Engine(pol)
    run(eng, recs)
    dest = {a.account for a in eng.alerts if a.detector == "destination"}
    assert dest == {"beta"}


def test_thresholds_tunable_per_account() -> None:
    pol = policy(
        {
            "accounts": {
                "acme": {
                    "detectors": {
                        "destination": {"critical": {"risk_calls": 100, "risk_spend": 1e6}}
                    }
                }
            }
        }
    )
    eng = Engine(pol)
    run(eng, by_end(_office_history("acme") + _tl_calls("acme", 10, start_hour=11)))
    dest = [a for a in eng.alerts if a.detector == "destination"]
    assert [a.severity for a in dest] == ["warning"]


def test_report_only_never_blocks() -> None:
    pol = policy(
        {
            "accounts": {
                "acme": {"report_only": True, "limits": {"max_spend_per_day": "5.00"}},
                "beta": {"detectors": {"destination": {"report_only": True}}},
            }
        }
    )
    recs = by_end(
        _office_history("acme")
        + _tl_calls("acme", 40)
        + _office_history("beta")
        + _tl_calls("beta", 3)
    )
    eng = Engine(pol, enforce=True)
    run(eng, recs)
    for acc in ("acme", "beta"):
        s = eng.enforcement()[acc]
        assert s.calls_refused == 0 and s.blocked_at is None
    assert any(
        a.report_only and a.severity == "critical" for a in eng.alerts if a.account == "acme"
    )
    beta_dest = [a for a in eng.alerts if a.account == "beta" and a.detector == "destination"]
    assert beta_dest and all(a.report_only for a in beta_dest)
    assert not any(eng.is_refused(r) for r in recs)


def test_critical_destination_alert_blocks_that_destination_in_enforce_replay() -> None:
    recs = by_end(_office_history("acme") + _tl_calls("acme", 40))
    eng = Engine(policy(), enforce=True)
    run(eng, recs)
    s = eng.enforcement()["acme"]
    at = s.blocked_subjects.get("country:TL")
    assert at is not None
    dest = [a for a in eng.alerts if a.detector == "destination" and a.severity == "critical"]
    assert dest and dest[0].subject == "TL"
    assert s.calls_refused > 30
    assert s.cost_prevented > 0
    # the calls that went through are those before the block
    tl = [r for r in recs if r.callee.startswith("+670")]
    allowed = [r for r in tl if r.start < at]
    assert s.calls_refused == len(tl) - len(allowed)
    # the block is about Timor-Leste for this account, not the whole account
    office = call("acme", "+31205550123", T0 + timedelta(days=8, hours=9))
    assert not eng.is_refused(office)
    assert eng.is_refused(call("acme", TL, T0 + timedelta(days=8, hours=9)))
    assert not eng.is_refused(call("beta", TL, T0 + timedelta(days=8, hours=9)))


def _office_weeks(account: str) -> list[CallRecord]:
    """Two weeks of an office line: on weekdays 12 calls of 10 minutes, every half hour
    from 08:00 (one call at a time, ~2 in parallel at most)."""
    out = []
    for d in range(14):
        day = T0 + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for i in range(12):
            out.append(
                call(account, "+31201234567", day + timedelta(hours=8, minutes=30 * i), talk=600)
            )
    return out


def test_account_level_critical_blocks_the_account() -> None:
    # a PBX hacked into many parallel calls to an ordinary country: concurrency and
    # deviation are about the account itself, so the account is blocked
    recs = _office_weeks("acme")
    burst = T0 + timedelta(days=15, hours=10)
    recs += [
        call("acme", "+4930123456", burst + timedelta(seconds=line * 7), talk=900)
        for line in range(40)
    ]
    eng = Engine(policy(), enforce=True)
    run(eng, by_end(recs))
    s = eng.enforcement()["acme"]
    assert s.blocked_at is not None
    blocker = next(a for a in eng.alerts if a.id == s.blocked_by)
    assert blocker.detector in ("concurrency", "deviation", "unusual_hours")
    assert eng.is_refused(call("acme", "+31201234567", burst + timedelta(hours=1)))


def _premium_history(account: str) -> list[CallRecord]:
    """A terminating PRS trunk: many callers reach its premium-rate numbers every day."""
    out = []
    for d in range(10):
        for i in range(40):
            t = T0 + timedelta(days=d, hours=8, minutes=15 * i)
            out.append(
                call(
                    account,
                    f"+31900{1234500 + i % 7}",
                    t,
                    talk=60 + 13 * (i % 9),
                    caller=f"+316{d:02d}{i:06d}",
                )
            )
    return out


def test_terminating_account_gets_warnings_and_its_trunk_is_never_blocked() -> None:
    pol = policy({"accounts": {"prs": {"traffic": "terminating"}}})
    first_day = [r for r in _premium_history("prs") if r.start < T0 + timedelta(days=1)]
    recs = by_end(_premium_history("prs"))
    eng = Engine(pol, enforce=True)
    run(eng, recs)
    account_level = [
        a
        for a in eng.alerts
        if a.detector in ("destination", "deviation", "unusual_hours", "concurrency")
    ]
    assert account_level, "the day-1 premium traffic is still reported"
    assert all(a.severity == "warning" for a in account_level)
    assert all(a.explanation.get("capped") for a in account_level if a.detector == "destination")
    s = eng.enforcement()["prs"]
    assert s.blocked_at is None and s.calls_refused == 0
    # the same traffic on an originating account is a critical premium-rate finding
    eng2 = Engine(policy(), enforce=False)
    run(eng2, by_end(first_day))
    assert any(a.severity == "critical" and a.detector == "destination" for a in eng2.alerts)


def test_terminating_account_pumped_number_is_blocked_not_the_trunk() -> None:
    pol = policy({"accounts": {"prs": {"traffic": "terminating"}}})
    prs = "+319091234567"
    recs = _premium_history("prs")
    start = T0 + timedelta(days=10, hours=18)
    recs += [
        call(
            "prs",
            prs,
            start + timedelta(seconds=9 * i),
            talk=11 + i % 2,
            caller=f"+3164555{i % 60:04d}",
        )
        for i in range(400)
    ]
    eng = Engine(pol, enforce=True)
    run(eng, by_end(recs))
    s = eng.enforcement()["prs"]
    assert s.blocked_at is None
    assert prs in s.blocked_subjects
    assert s.calls_refused > 0
    later = start + timedelta(hours=2)
    assert eng.is_refused(call("prs", prs, later))
    assert not eng.is_refused(call("prs", "+319001234500", later, caller="+31612345678"))


def test_max_spend_per_day_within_limit_plus_one_call() -> None:
    limit = Decimal("50.00")
    pol = policy({"accounts": {"acme": {"limits": {"max_spend_per_day": str(limit)}}}})
    # 3 parallel lines of expensive calls (EUR 4 each), detectors other than limits off
    off = {d: {"enabled": False} for d in ("destination", "unusual_hours", "deviation")}
    pol = policy(
        {"accounts": {"acme": {"limits": {"max_spend_per_day": str(limit)}, "detectors": off}}}
    )
    t = T0 + timedelta(days=1, hours=9)
    recs = []
    for line in range(3):
        for i in range(20):
            recs.append(
                call(
                    "acme",
                    "+4930123456",
                    t + timedelta(minutes=i * 3, seconds=line * 20),
                    talk=150,
                    cost="4.00",
                )
            )
    recs = by_end(recs)
    eng = Engine(pol, enforce=True)
    run(eng, recs)
    s = eng.enforcement()["acme"]
    assert s.cost_incurred <= limit + Decimal("4.00")
    assert s.cost_incurred > limit
    assert s.calls_refused == len(recs) - s.calls_allowed
    crit = [a for a in eng.alerts if a.detector == "limits" and a.severity == "critical"]
    assert len(crit) == 1 and crit[0].explanation["parameter"] == "max_spend_per_day"
    # 80 % of the limit was announced first: the same alert escalated
    assert crit[0].escalated_at is not None and crit[0].detected_at < crit[0].escalated_at
    assert s.blocked_by == crit[0].id


def test_limit_day_is_calendar_day_in_account_zone() -> None:
    pol = policy(
        {
            "accounts": {
                "acme": {
                    "timezone": "Asia/Tokyo",
                    "limits": {"max_calls_per_day": 3},
                    "detectors": {"destination": {"enabled": False}},
                }
            }
        }
    )
    # 14:00-15:00 UTC is 23:00-24:00 in Tokyo; 15:30 UTC is the next Tokyo day
    base = T0 + timedelta(days=1, hours=14)
    recs = [call("acme", "+4930123456", base + timedelta(minutes=10 * i)) for i in range(3)]
    recs += [
        call("acme", "+4930123456", base + timedelta(hours=1, minutes=30 + i)) for i in range(3)
    ]
    eng = Engine(pol, enforce=True)
    run(eng, by_end(recs))
    assert eng.enforcement()["acme"].calls_refused == 0
    extra = call("acme", "+4930123456", base + timedelta(hours=2))
    assert eng.is_refused(extra)
    assert eng.is_refused(extra)  # pure: asking twice changes nothing


def test_blocked_country_and_allowed_hours() -> None:
    pol = policy(
        {
            "accounts": {
                "acme": {
                    "limits": {
                        "blocked_countries": ["TL"],
                        "allowed_hours": [
                            {
                                "days": "mon-fri",
                                "from": "07:00",
                                "to": "19:00",
                                "applies_to": "international",
                            }
                        ],
                    }
                }
            }
        }
    )
    eng = Engine(pol, enforce=True)
    monday_noon = T0 + timedelta(days=7, hours=11)  # 12:00 Amsterdam
    ok = call("acme", "+4930123456", monday_noon)
    night = call("acme", "+4930123456", T0 + timedelta(days=7, hours=1))
    tl = call("acme", TL, monday_noon + timedelta(minutes=5))
    assert eng.refusal(ok) is None
    assert "allowed" in (eng.refusal(night) or "")
    assert "blocked country" in (eng.refusal(tl) or "")
    domestic_night = call("acme", "+31201234567", T0 + timedelta(days=7, hours=1))
    assert eng.refusal(domestic_night) is None
    out = eng.process(tl)
    assert out and out[0].detector == "limits" and out[0].severity == "critical"
    assert out[0].explanation["parameter"] == "blocked_countries"
    assert eng.enforcement()["acme"].calls_refused == 1


def test_unusual_hours_on_established_account() -> None:
    recs = _office_history("acme", days=14)
    night = T0 + timedelta(days=15, hours=1)  # Tuesday 02:00 Amsterdam
    recs += [
        call("acme", f"+4930{1234500 + i}", night + timedelta(minutes=3 * i), talk=100)
        for i in range(12)
    ]
    eng = Engine(policy())
    run(eng, by_end(recs))
    uh = [a for a in eng.alerts if a.detector == "unusual_hours"]
    assert len(uh) == 1 and uh[0].severity == "warning"
    assert "normally silent" in uh[0].explanation["why"]


@pytest.mark.parametrize("traffic", ["originating", "terminating"])
def test_first_night_of_a_new_account(traffic: str) -> None:
    """No history yet: night calls are judged by the population's office hours (at most a
    warning); a terminating trunk's are not (its hours are its callers')."""
    night = T0 + timedelta(hours=1)  # Monday 02:00 Amsterdam
    recs = [
        call("trunk", f"+3120{1234500 + i}", night + timedelta(minutes=6 * i)) for i in range(20)
    ]
    eng = Engine(policy({"accounts": {"trunk": {"traffic": traffic}}}))
    run(eng, by_end(recs))
    found = [a.severity for a in eng.alerts if a.detector == "unusual_hours"]
    assert found == (["warning"] if traffic == "originating" else [])


def test_new_country_is_at_most_a_warning() -> None:
    recs = _office_history("acme", days=14)
    trip = T0 + timedelta(days=15, hours=9)
    recs += [
        call("acme", f"+8131234{5600 + i}", trip + timedelta(minutes=20 * i), talk=300)
        for i in range(25)
    ]
    eng = Engine(policy())
    run(eng, by_end(recs))
    dest = [a for a in eng.alerts if a.detector == "destination"]
    assert len(dest) == 1 and dest[0].severity == "warning" and dest[0].subject == "JP"


def test_overlap_peak_is_exact_once_all_calls_known() -> None:
    ov = Overlap()
    # intervals arrive by end time: A [0,100), B [10,50), C [40,120), D [60,70)
    ov.add(10, 50)
    assert ov.peak_with(60, 70) == 1  # D alone among known-at-its-end... B ended at 50
    ov.add(60, 70)
    p_a = ov.peak_with(0, 100)  # A overlaps B (10-50) and D (60-70): peak 2
    assert p_a == 2
    ov.add(0, 100)
    p_c = ov.peak_with(40, 120)  # C with A and B at 40-50: A, B, C = 3
    assert p_c == 3
    ov.add(40, 120)
    assert ov.active_at(45) == 3


@pytest.mark.parametrize(("cost", "severity"), [("6.00", "critical"), ("0.24", "warning")])
def test_concurrency_alert_on_parallel_lines(cost: str, severity: str) -> None:
    """Fifteen lines at once on an office account: critical when they cost (a hacked
    PBX), a warning when the episode is cheap (a busy day must not block the business)."""
    recs = _office_weeks("acme")
    burst = T0 + timedelta(days=15, hours=10)
    for line in range(15):
        start = burst + timedelta(seconds=line * 7)
        recs.append(call("acme", "+4930123456", start, talk=900, cost=cost))
    eng = Engine(policy(), enforce=True)
    run(eng, by_end(recs))
    conc = [a for a in eng.alerts if a.detector == "concurrency"]
    assert conc and conc[0].severity == severity
    assert conc[0].explanation["value"] >= 8
    blocked = eng.enforcement()["acme"].blocked_at
    assert (blocked is not None) == (severity == "critical")


def test_sequential_range_dialing() -> None:
    t = T0 + timedelta(days=3, hours=10)
    recs = [
        call("acme", f"+252611234{i:02d}", t + timedelta(seconds=15 * i), answered=False)
        for i in range(20)
    ]
    pol = policy({"defaults": {"detectors": {"destination": {"report_only": True}}}})
    eng = Engine(pol, enforce=True)
    run(eng, by_end(recs))
    seq = [a for a in eng.alerts if a.detector == "sequential"]
    assert len(seq) == 1 and seq[0].severity == "critical" and seq[0].subject == "+252611234"
    assert seq[0].subject_kind == "prefix"
    later = call("beta", "+25261123407", t + timedelta(hours=1))
    assert eng.is_refused(later)  # the tested range is blocked for everyone
    assert longest_run([1, 2, 4, 9, 10, 11, 13], 2) == 4


def test_wangiri_flood_and_callbacks() -> None:
    t = T0 + timedelta(days=3, hours=10)
    src = "+881612345678"
    rings = [
        call(
            "ix-in",
            f"+3120555{1000 + i * 7}",
            t + timedelta(seconds=3 * i),
            answered=False,
            ring=2,
            caller=src,
        )
        for i in range(120)
    ]
    back = [
        call("victim", src, t + timedelta(minutes=30 + 5 * k), talk=120, caller="+31205551007")
        for k in range(4)
    ]
    eng = Engine(policy(), enforce=True)
    run(eng, by_end(rings + back))
    flood = [a for a in eng.alerts if a.detector == "wangiri" and a.subject == "ix-in"]
    assert flood and flood[0].severity == "critical"
    assert eng.enforcement()["ix-in"].blocked_at is None  # a ring flood does not block a trunk
    cb = [a for a in eng.alerts if a.detector == "wangiri" and a.subject == src]
    assert cb and cb[0].account == "victim"
    assert "one-ring" in cb[0].explanation["why"]
    # the satellite callbacks also went critical in destination: later callbacks refused
    victim = eng.enforcement()["victim"]
    assert victim.calls_refused >= 1
    # ...but the victim's account is not blocked: its ordinary calls go through
    assert victim.blocked_at is None
    assert set(victim.blocked_subjects) <= {src, "country:001", "number_type:SATELLITE"}
    later = t + timedelta(hours=3)
    assert not eng.is_refused(call("victim", "+31205551234", later))
    assert not eng.is_refused(call("victim", "+4930123456", later))
    assert eng.is_refused(call("victim", src, later))


def test_pumping_on_hand_made_generator() -> None:
    prs, normal = "+319091234567", "+319001234567"
    recs = []
    for d in range(14):  # normal premium lines: a handful of calls a day
        for i in range(4):
            t = T0 + timedelta(days=d, hours=9 + 2 * i)
            recs.append(call("prs", normal, t, talk=120 + 37 * i, caller=f"+3161{d:03d}{i:04d}"))
        if d % 5 == 0:
            recs.append(
                call("prs", prs, T0 + timedelta(days=d, hours=15), talk=200, caller=f"+3162{d:07d}")
            )
    start = T0 + timedelta(days=15, hours=18)
    for i in range(400):
        recs.append(
            call(
                "prs",
                prs,
                start + timedelta(seconds=9 * i),
                talk=11 + i % 2,
                caller=f"+3164555{i % 60:04d}",
            )
        )
    eng = Engine(policy())
    run(eng, by_end(recs))
    pump = [a for a in eng.alerts if a.detector == "pumping"]
    assert {a.subject for a in pump} == {prs}
    assert pump[0].severity == "critical"
    assert "near-identical length" in pump[0].explanation["why"]


def test_false_positive_tuning_known_countries_and_numbers() -> None:
    """A tuning record from a false-positive case (docs/cases.md) silences the subject."""
    trip = T0 + timedelta(days=15, hours=9)
    jp = [
        call("acme", f"+8131234{5600 + i}", trip + timedelta(minutes=20 * i), talk=300)
        for i in range(10)
    ]
    tl = _tl_calls("acme", 6, start_hour=11)
    recs = by_end(_office_history("acme", days=14) + jp + tl)
    untuned = Engine(policy())
    run(untuned, recs)
    assert {a.subject for a in untuned.alerts if a.detector == "destination"} == {"JP", "TL"}
    options = {"known_countries": ["jp"], "known_numbers": [r.callee for r in tl]}
    pol = policy({"accounts": {"acme": {"detectors": {"destination": {"options": options}}}}})
    tuned = Engine(pol)
    run(tuned, recs)
    assert not [a for a in tuned.alerts if a.detector == "destination"]
    # only for that account
    other = by_end(_office_history("beta", days=14) + [call("beta", r.callee, r.start) for r in jp])
    eng = Engine(pol)
    run(eng, other)
    assert [a.subject for a in eng.alerts if a.detector == "destination"] == ["JP"]


def test_population_priors_learned_online_without_calibration() -> None:
    """Without a priors file the engine learns which countries the population calls, so
    a new account's first calls to Germany are not 'a country never called'; a high-risk
    range is never made normal by the population, and one account alone never makes its
    own destination common."""
    recs = []
    for k in range(6):
        for d in range(3):
            day = T0 + timedelta(days=d, hours=8)
            for i in range(4):
                recs.append(
                    call(
                        f"office{k}",
                        f"+4930{1234500 + 10 * k + i}",
                        day + timedelta(minutes=40 * i + k),
                    )
                )
            recs.append(call(f"office{k}", "+31201234567", day + timedelta(hours=2, minutes=k)))
    day4 = T0 + timedelta(days=3)
    recs += [
        call("newco", f"+4989{1234500 + i}", day4 + timedelta(hours=9, minutes=10 * i))
        for i in range(5)
    ]
    recs += [
        call("newco", f"+25261{1234500 + i}", day4 + timedelta(hours=2, minutes=5 * i))
        for i in range(3)
    ]
    recs += [
        call("loner", f"+8131234{5600 + i}", day4 + timedelta(hours=10, minutes=9 * i))
        for i in range(5)
    ]
    recs = by_end(recs)

    learned = Engine(policy())
    run(learned, recs)
    newco = {
        a.subject: a.severity
        for a in learned.alerts
        if a.account == "newco" and a.detector == "destination"
    }
    assert newco == {"SO": "critical"}  # Germany is common; Somalia at 2 am is not normal
    assert [a.subject for a in learned.alerts if a.account == "loner"] == ["JP"]
    pop = learned.population
    assert pop is not None and pop.common("DE", "newco", False, 0.01, 2)
    assert not pop.common("JP", "loner", True, 0.01, 2)

    # without the population (and no calibration) there is no basis to call Germany new
    # for an account without history of its own; the high-risk range still alerts
    cold = Engine(policy(), learn_population=False)
    run(cold, recs)
    cold_newco = {
        a.subject for a in cold.alerts if a.account == "newco" and a.detector == "destination"
    }
    assert cold_newco == {"SO"}
    # an account with history of its own is judged by it: office0 never called Japan
    later = by_end(
        recs
        + [
            call("office0", f"+8131234{5700 + i}", day4 + timedelta(hours=11, minutes=9 * i))
            for i in range(3)
        ]
    )
    cold = Engine(policy(), learn_population=False)
    run(cold, later)
    assert [a.subject for a in cold.alerts if a.account == "office0"] == ["JP"]


def test_first_day_of_data_calls_no_ordinary_country_new() -> None:
    """No calibration and no history yet: neighbouring countries on the first day are not
    'never called'; a high-risk range is judged from its first call; from the second day
    the population knows what is common, and what it does not know is new."""
    day1 = T0 + timedelta(hours=9)
    # office0 calls Belgium first, hours before the others do
    recs = [
        call(
            f"office{k}",
            f"+3225{1234500 + 10 * k + i}",
            day1 + timedelta(hours=3 * k, minutes=20 * i),
        )
        for k in range(4)
        for i in range(4)
    ]
    recs += [
        call("office0", f"+25261{1234500 + i}", day1 + timedelta(hours=3, minutes=i))
        for i in range(3)
    ]
    day2 = day1 + timedelta(days=1)
    recs += [
        call(f"office{k}", f"+3225{1234600 + 10 * k + i}", day2 + timedelta(minutes=20 * i + k))
        for k in range(4)
        for i in range(4)
    ]
    day3 = day2 + timedelta(days=1)
    recs += [
        call("newco", f"+3225{1234700 + i}", day3 + timedelta(minutes=5 * i)) for i in range(4)
    ]
    recs += [
        call("newco", f"+5371{1234500 + i}", day3 + timedelta(minutes=7 * i)) for i in range(4)
    ]
    # 4 accounts a day do not make 10 account-days: a lower basis for this small population
    basis = {"destination": {"options": {"population_basis_account_days": 4}}}
    eng = Engine(policy({"defaults": {"detectors": basis}}))
    run(eng, by_end(recs))
    dest = sorted((a.account, a.subject) for a in eng.alerts if a.detector == "destination")
    assert dest == [("newco", "CU"), ("office0", "SO")]


def _brute_peak(known: list[tuple[float, float]], start: float, end: float) -> int:
    """Peak within [start, end) of the known calls plus the new one, by trying every
    start instant (the peak is at one of them)."""
    calls = [*known, (start, end)]
    instants = [start] + [s for s, _ in known if start < s < end]
    return max(sum(1 for s, e in calls if s <= t < e) for t in instants)


def test_overlap_peak_and_bound_match_brute_force_in_and_out_of_order() -> None:
    rng = random.Random(5)
    for shuffle in (False, True):
        calls = []
        for _ in range(400):
            s = float(rng.randrange(0, 20_000))
            calls.append((s, s + rng.choice((0, 1, 5, 30, 120, 600, 1800))))
        calls.sort(key=lambda c: c[1])
        if shuffle:  # arrivals up to a few minutes late
            calls.sort(key=lambda c: c[1] + rng.uniform(0, 300))
        ov = Overlap()
        known: list[tuple[float, float]] = []
        for s, e in calls:
            expected = _brute_peak(known, s, e if e > s else s + 1e-6)
            assert ov.peak_with(s, e) == expected
            assert ov.bound(s) >= expected
            ov.add(s, e)
            known.append((s, e))
