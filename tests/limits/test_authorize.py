"""The authorize decision and call lifecycle, on every state backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tollguard.limits.memory import MemoryState
from tollguard.limits.service import AuthorizeService
from tollguard.limits.state import StateBackend
from tollguard.policy import Policy

MON_NOON = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)  # Monday 12:00 in Amsterdam
SAT_NOON = datetime(2024, 6, 8, 10, 0, tzinfo=UTC)


def svc(policy: Policy, backend: StateBackend) -> AuthorizeService:
    return AuthorizeService(policy, backend)


def test_normal_call_allowed_with_rate_and_duration(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    d = s.authorize("acme", "100", "0201234567", "c1", MON_NOON)
    assert (d.decision, d.reason) == ("allow", "ok")
    assert d.max_duration_s == 7200  # max_call_duration_s, budget is ample
    assert d.rate is not None and d.rate["prefix"] == "31"
    assert d.number == {"e164": "+31201234567", "country": "NL", "number_type": "FIXED_LINE"}


def test_end_on_a_server_that_never_authorized_is_priced(
    policy: Policy, backend: StateBackend
) -> None:
    """Another server (or this one before a restart) authorized the call: the end is
    priced by the account's deck, not settled at zero because no authorize here has
    loaded that deck yet."""
    first = svc(policy, backend)
    assert first.authorize("acme", "100", "0201234567", "c1", MON_NOON).decision == "allow"
    other = svc(policy, backend)  # a fresh service on the same state
    status, call, cost = other.end("c1", billsec=65, at=MON_NOON + timedelta(seconds=70))
    assert status == "ended" and cost > 0
    assert cost == first.call_cost_e4(call, 65)
    spent = first.counters("acme", MON_NOON)["spend_day"]["spent"]
    assert Decimal(spent) == Decimal(cost) / 10000


def test_policy_deny_reasons(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    cases = [
        ("acme", "00670771234567", MON_NOON, "country_blocked"),
        ("acme", "00441234567890", SAT_NOON, "outside_allowed_hours"),
        ("acme", "00441234567890", MON_NOON.replace(hour=19), "outside_allowed_hours"),  # 21:00
        ("typed", "0900123456", MON_NOON, "number_type_blocked"),
        ("typed", "00441234567890", MON_NOON, "country_not_allowed"),
        ("acme", "0088212345678", MON_NOON, "unrated_destination"),
        ("nobody", "0201234567", MON_NOON, "unknown_account"),
    ]
    for i, (account, callee, at, reason) in enumerate(cases):
        d = s.authorize(account, "100", callee, f"deny-{i}", at)
        assert (d.decision, d.reason) == ("deny", reason), (account, callee, d.detail)
        assert d.max_duration_s == 0
    # domestic calls are not bound by the international hours
    assert s.authorize("acme", "100", "0201234567", "sat-nl", SAT_NOON).decision == "allow"
    # nothing denied above was counted
    c = s.counters("acme", MON_NOON)
    assert c["calls_day"] == 0 and c["spend_day"] == {"spent": "0.0000", "reserved": "0.0000"}


def test_calls_per_day_minute_and_concurrency(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    first = s.authorize("calls-only", "1", "0201234567", "a", MON_NOON)
    assert first.decision == "allow"
    d = s.authorize("calls-only", "1", "0201234567", "b", MON_NOON)
    assert (d.decision, d.reason) == ("deny", "concurrent_calls")
    s.end("a", billsec=30, at=MON_NOON + timedelta(seconds=40))
    assert s.authorize("calls-only", "1", "0201234567", "b", MON_NOON).decision == "allow"
    s.end("b", billsec=0)
    d = s.authorize("calls-only", "1", "0201234567", "c", MON_NOON)
    assert (d.reason, d.detail["value"], d.detail["limit"]) == ("calls_per_day", 2, 2)
    # the next calendar day in the account's zone: 22:30 UTC = 00:30 Amsterdam
    assert (
        s.authorize(
            "calls-only", "1", "0201234567", "d", MON_NOON.replace(hour=22, minute=30)
        ).decision
        == "allow"
    )
    # calls per minute: small allows 2 a minute
    for i in range(2):
        assert s.authorize("small", "1", "0201234567", f"m{i}", MON_NOON).decision == "allow"
        s.end(f"m{i}", billsec=0)
    d = s.authorize("small", "1", "0201234567", "m2", MON_NOON + timedelta(seconds=59))
    assert d.reason == "calls_per_minute"
    assert (
        s.authorize("small", "1", "0201234567", "m3", MON_NOON + timedelta(seconds=60)).decision
        == "allow"
    )


def test_per_country_caps(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    assert s.authorize("typed", "1", "0049301234567", "de1", MON_NOON).decision == "allow"
    d = s.authorize("typed", "1", "0049301234567", "de2", MON_NOON)
    assert (d.decision, d.reason) == ("deny", "calls_per_day_country")
    # NL spend cap 0.10/day at 0.01/min fixed: the grant is 10 minutes
    d = s.authorize("typed", "1", "0201234567", "nl1", MON_NOON)
    assert (d.decision, d.max_duration_s) == ("allow", 600)
    d = s.authorize("typed", "1", "0201234567", "nl2", MON_NOON)
    assert (d.decision, d.reason) == ("deny", "spend_per_day_country")


def test_budget_grant_settle_and_release(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    # small: 0.50/hour, 1.00/day; mobile 0.05/min in 60 s steps -> 10 minutes
    d = s.authorize("small", "1", "0612345678", "x1", MON_NOON)
    assert (d.decision, d.max_duration_s) == ("allow", 600)
    assert s.counters("small", MON_NOON)["spend_hour"] == {"spent": "0.0000", "reserved": "0.5000"}
    d2 = s.authorize("small", "1", "0612345678", "x2", MON_NOON)
    assert (d2.decision, d2.reason) == ("deny", "spend_per_hour")
    s.answer("x1", MON_NOON + timedelta(seconds=5))
    status, _call, cost = s.end("x1", billsec=61, at=MON_NOON + timedelta(seconds=66))
    assert (status, cost) == ("ended", 1000)  # 2 minutes x 0.05
    c = s.counters("small", MON_NOON)
    assert c["spend_hour"] == {"spent": "0.1000", "reserved": "0.0000"}
    assert c["spend_day"] == {"spent": "0.1000", "reserved": "0.0000"}
    assert c["concurrent"] == 0
    # end is idempotent
    assert s.end("x1", billsec=61)[0] == "already_ended"
    assert s.counters("small", MON_NOON)["spend_day"]["spent"] == "0.1000"
    d3 = s.authorize("small", "1", "0612345678", "x3", MON_NOON)
    assert (d3.decision, d3.max_duration_s) == ("allow", 480)  # 0.40 left -> 8 minutes


def test_reserved_plus_spent_never_exceeds_limit(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    limit = Decimal("1.0000")
    at = MON_NOON
    for i in range(40):
        at = at + timedelta(minutes=7)  # new minute and sometimes a new hour
        d = s.authorize("small", "1", "0900123456" if i % 2 else "0612345678", f"b{i}", at)
        c = s.counters("small", at)
        total = Decimal(c["spend_day"]["spent"]) + Decimal(c["spend_day"]["reserved"])
        assert total <= limit
        if d.decision == "allow":
            s.answer(f"b{i}", at)
            s.end(f"b{i}", billsec=d.max_duration_s, at=at + timedelta(seconds=d.max_duration_s))
    c = s.counters("small", at)
    assert Decimal(c["spend_day"]["spent"]) <= limit
    assert c["spend_day"]["reserved"] == "0.0000"


def test_expiry_settles_answered_and_releases_unanswered(
    policy: Policy, backend: StateBackend
) -> None:
    s = svc(policy, backend)
    d1 = s.authorize("small", "1", "0612345678", "e1", MON_NOON)
    s.answer("e1", MON_NOON + timedelta(seconds=3))
    assert d1.max_duration_s == 600
    d2 = s.authorize("acme", "1", "0201234567", "e2", MON_NOON)  # never answered
    assert d2.decision == "allow"
    assert s.expire(MON_NOON + timedelta(seconds=200)) == 1  # e2: ring timeout 180 s
    assert s.counters("acme", MON_NOON)["spend_day"] == {"spent": "0.0000", "reserved": "0.0000"}
    assert s.counters("acme", MON_NOON)["concurrent"] == 0
    # e1 expires at answer (3) + 600 + 300 grace, charged its whole reservation
    assert s.expire(MON_NOON + timedelta(seconds=900)) == 0
    assert s.expire(MON_NOON + timedelta(seconds=904)) == 1
    c = s.counters("small", MON_NOON)
    assert c["spend_hour"] == {"spent": "0.5000", "reserved": "0.0000"} and c["concurrent"] == 0
    # an end that arrives later does not charge twice
    assert s.end("e1", billsec=10)[0] == "already_ended"
    assert s.counters("small", MON_NOON)["spend_hour"]["spent"] == "0.5000"


def test_expiry_on_authorize_of_same_account(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    assert s.authorize("calls-only", "1", "0201234567", "z1", MON_NOON).decision == "allow"
    # z1 never ends; past its ring timeout the next authorize frees the slot
    d = s.authorize("calls-only", "1", "0201234567", "z2", MON_NOON + timedelta(minutes=5))
    assert d.decision == "allow"


def test_answered_call_outlives_its_ring_timeout_among_many(
    policy: Policy, backend: StateBackend
) -> None:
    s = svc(policy, backend)
    for i in range(40):  # many open calls; half end, one is answered, the rest never report
        assert s.authorize("free", "1", "0201234567", f"m{i}", MON_NOON).decision == "allow"
    s.answer("m0", MON_NOON + timedelta(seconds=5))
    for i in range(1, 20):
        s.end(f"m{i}", billsec=0)
    assert s.counters("free", MON_NOON)["concurrent"] == 21
    # past the ring timeout: the 20 unanswered open calls expire, the answered one stays
    later = MON_NOON + timedelta(seconds=200)
    assert s.authorize("free", "1", "0201234567", "n1", later).decision == "allow"
    assert s.expire(later) == 0
    assert s.counters("free", later)["concurrent"] == 2  # m0 and n1
    assert s.end("m0", billsec=60)[0] != "already_ended"


def test_report_only_allows_and_warns(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    d = s.authorize("watch", "1", "00670771234567", "w1", MON_NOON)
    assert (d.decision, d.reason) == ("allow", "report_only")
    assert {w["reason"] for w in d.warnings if w.get("would_deny")} == {"country_blocked"}
    d = s.authorize("watch", "1", "0201234567", "w2", MON_NOON)
    assert d.decision == "allow"
    assert [w["reason"] for w in d.warnings if w.get("would_deny")] == ["calls_per_day"]
    assert s.counters("watch", MON_NOON)["calls_day"] == 2


def test_retry_of_same_call_id_counts_once(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    a = s.authorize("small", "1", "0612345678", "r1", MON_NOON)
    b = s.authorize("small", "1", "0612345678", "r1", MON_NOON)
    assert a.decision == b.decision == "allow"
    assert a.max_duration_s == b.max_duration_s == 600
    assert s.counters("small", MON_NOON)["calls_day"] == 1


def test_block_unblock_and_override(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    s.block("free", "suspicious", "analyst-1", MON_NOON)
    d = s.authorize("free", "1", "0201234567", "k1", MON_NOON)
    assert (d.decision, d.reason) == ("deny", "account_blocked")
    assert s.unblock("free") is True
    assert s.authorize("free", "1", "0201234567", "k2", MON_NOON).decision == "allow"
    s.set_policy("free", {"limits": {"max_calls_per_day": 1}})
    d = s.authorize("free", "1", "0201234567", "k3", MON_NOON)
    assert d.reason == "calls_per_day"
    s.set_policy("free", None)
    assert s.authorize("free", "1", "0201234567", "k4", MON_NOON).decision == "allow"


def test_reset_counter(policy: Policy, backend: StateBackend) -> None:
    s = svc(policy, backend)
    for i in range(2):
        s.authorize("calls-only", "1", "0201234567", f"q{i}", MON_NOON)
        s.end(f"q{i}", billsec=0)
    assert s.authorize("calls-only", "1", "0201234567", "q2", MON_NOON).reason == "calls_per_day"
    s.reset_counter("calls-only", "calls_day", MON_NOON)
    assert s.authorize("calls-only", "1", "0201234567", "q3", MON_NOON).decision == "allow"
    assert s.reset_counter("calls-only", "concurrent") == 1
    assert s.counters("calls-only", MON_NOON)["concurrent"] == 0


def test_sqlite_restart_keeps_counters_blocks_and_calls(policy: Policy, tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    s = AuthorizeService(policy, MemoryState(path))
    s.authorize("small", "1", "0612345678", "p1", MON_NOON)
    s.answer("p1", MON_NOON)
    s.authorize("calls-only", "1", "0201234567", "p2", MON_NOON)
    s.end("p2", billsec=0)
    s.block("free", "fraud", "admin", MON_NOON)
    s.set_policy("acme", {"limits": {"max_calls_per_day": 5}})
    s.audit("admin", "test", "free", {}, "*")
    s.state.close()
    s2 = AuthorizeService(policy, MemoryState(path))
    assert s2.counters("small", MON_NOON)["spend_hour"]["reserved"] == "0.5000"
    assert s2.counters("small", MON_NOON)["concurrent"] == 1
    assert s2.counters("calls-only", MON_NOON)["calls_day"] == 1
    assert s2.authorize("free", "1", "0201234567", "p3", MON_NOON).reason == "account_blocked"
    assert s2.plan("acme").limits.max_calls_per_day == 5
    assert s2.state.audit()[0]["action"] == "test"
    status, _, cost = s2.end("p1", billsec=60)
    assert (status, cost) == ("ended", 500)
    assert s2.counters("small", MON_NOON)["spend_hour"] == {"spent": "0.0500", "reserved": "0.0000"}
