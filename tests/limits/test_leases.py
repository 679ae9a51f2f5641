"""Quota leases on the real Redis: limits hold across servers, nothing leaks or doubles."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest
import redis
import typer
from typer.testing import CliRunner

from tollguard.commands import register_all
from tollguard.limits.leases import LEASE_TTL_S, LeasingRedisState
from tollguard.limits.redis_state import RedisState
from tollguard.limits.state import NO_LIMIT, BlockState, Check, ReserveRequest

from .conftest import fresh_redis_url

CALLS_DAY = "tg:{a}:cd:1"
SPEND_DAY = "tg:{a}:sd:1"
WANT = 1_000  # EUR 0.10 per call


def request(
    call_id: str,
    calls_limit: int = 1000,
    spend_limit: int = 10_000_000,
    max_concurrent: int = NO_LIMIT,
) -> ReserveRequest:
    now = time.time()
    return ReserveRequest(
        account="a",
        call_id=call_id,
        now=now,
        counts=[Check(CALLS_DAY, calls_limit, 3600, "calls_per_day")],
        spends=[Check(SPEND_DAY, spend_limit, 3600, "spend_per_day")],
        max_concurrent=max_concurrent,
        want_e4=WANT,
        min_e4=10,
        ring_expires_at=now + 180,
        hold_s=600,
        meta={"deck": "d", "e164": "+31612345678"},
    )


@pytest.fixture
def url() -> str:
    return fresh_redis_url()


@pytest.fixture
def servers(url: str) -> Iterator[list[LeasingRedisState]]:
    made = [LeasingRedisState(url, calls=10, share=4), LeasingRedisState(url, calls=10, share=4)]
    yield made
    for s in made:
        s.close()


async def listening(*states: LeasingRedisState) -> None:
    """Leases are used only once invalidations can arrive: start and wait for that."""
    for s in states:  # a call of another account starts the subscription
        warm = request(f"warm-{s.server}")
        warm.account, warm.spends = "w", []
        warm.counts = [Check("tg:{w}:cd:1", NO_LIMIT, 3600, "calls_per_day")]
        await s.reserve_async(warm)
    for _ in range(500):
        if all(s._listening for s in states):
            return
        await asyncio.sleep(0.01)
    pytest.fail("the lease invalidation channel was not subscribed within 5 s")


def raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def test_decisions_come_from_leases_and_every_call_is_recorded(
    url: str, servers: list[LeasingRedisState]
) -> None:
    a = servers[0]

    async def run() -> list[int | None]:
        await listening(a)
        out = []
        for i in range(25):
            r = await a.reserve_async(request(f"c{i}"))
            assert r.ok and r.reserved_e4 == WANT and not r.duplicate
            out.append(r.remaining_e4)
        await a.drain()
        return out

    remaining = asyncio.run(run())
    assert a.granted >= 2  # 25 calls, 10 per lease
    # the budget left is reported as the exact path would: it shrinks by one call each time
    assert all(x is not None for x in remaining)
    assert all(x - y == WANT for x, y in itertools.pairwise(remaining))  # type: ignore[operator]
    # readouts leave leased quota out; the raw counters hold the unused leases too
    assert a.read_counts([CALLS_DAY]) == [25]
    assert a.read_spends([SPEND_DAY]) == [(0, 25 * WANT)]
    r = raw(url)
    assert int(r.get(CALLS_DAY) or 0) > 25
    other = RedisState(url)  # any server sees the calls: answer and end work there
    try:
        call = other.get_call("c3")
        assert call is not None and call.state == "ringing" and call.reserved_e4 == WANT
        assert other.end("c3", 500, time.time()).status == "ended"
        assert a.read_spends([SPEND_DAY]) == [(500, 24 * WANT)]
    finally:
        other.close()
    a.close()  # leases go back: raw counters are exact again, nothing is left leased
    assert int(r.get(CALLS_DAY) or 0) == 25
    assert r.hget(SPEND_DAY, "r") == str(24 * WANT)
    assert r.hgetall("tg:{a}:leased") == {}
    assert list(r.scan_iter("tg:lease:*")) == []


def fill_exactly(url: str, prefix: str, **limits: int) -> list[int]:
    """With every lease given back, the exact path takes what is left, call by call."""
    exact = RedisState(url)
    try:
        out: list[int] = []
        for i in range(200):
            r = exact.reserve(request(f"{prefix}{i}", **limits))
            if not r.ok:
                return out
            out.append(r.reserved_e4)
        pytest.fail("the limit was never reached")
    finally:
        exact.close()


def test_two_servers_never_pass_the_calls_limit_and_lose_none_of_it(
    url: str, servers: list[LeasingRedisState]
) -> None:
    a, b = servers

    async def run() -> int:
        await listening(a, b)
        tasks = [
            (a if i % 2 else b).reserve_async(request(f"x{i}", calls_limit=60)) for i in range(120)
        ]
        allowed = sum(r.ok for r in await asyncio.gather(*tasks))
        for s in servers:
            await s.shutdown()
        return allowed

    allowed = asyncio.run(run())
    assert 30 <= allowed <= 60  # leases held by the other server may deny a few at the edge
    assert a.read_counts([CALLS_DAY]) == [allowed]
    assert allowed + len(fill_exactly(url, "fill", calls_limit=60)) == 60
    assert a.granted + b.granted >= 2


def test_the_spend_limit_holds_to_the_cent(url: str, servers: list[LeasingRedisState]) -> None:
    a, b = servers
    limit = 40 * WANT + 500  # room for 40 whole reservations and part of one more

    async def run() -> list[int]:
        await listening(a, b)
        out = []
        for i in range(60):
            r = await (a if i % 3 else b).reserve_async(request(f"s{i}", spend_limit=limit))
            if r.ok:
                out.append(r.reserved_e4)
        for s in servers:
            await s.shutdown()
        return out

    reserved = asyncio.run(run())
    assert sum(reserved) <= limit
    assert sum(a.read_spends([SPEND_DAY])[0]) == sum(reserved)
    rest = fill_exactly(url, "fill", spend_limit=limit)
    assert sum(reserved) + sum(rest) == limit  # every cent, not one more
    assert (reserved + rest)[-1] == 500  # the last reservation is partial (exact path)


def test_concurrent_call_slots_are_leased_and_calls_ending_anywhere_free_them(
    url: str, servers: list[LeasingRedisState]
) -> None:
    a, b = servers

    async def run() -> list[str]:
        await listening(a, b)
        tasks = [
            (a if i % 2 else b).reserve_async(request(f"k{i}", max_concurrent=20))
            for i in range(40)
        ]
        allowed = [f"k{i}" for i, r in enumerate(await asyncio.gather(*tasks)) if r.ok]
        await a.drain()
        await b.drain()
        assert a.concurrent("a") == len(allowed)  # leased slots are left out
        for call_id in allowed[:5]:  # calls ending on the other server free their slot
            assert (await a.end_async(call_id, 0, time.time())).status == "ended"
        for s in servers:
            await s.shutdown()
        return allowed

    allowed = asyncio.run(run())
    assert a.granted + b.granted >= 2  # the slots came from leases
    assert 10 <= len(allowed) <= 20
    assert raw(url).zcard("tg:{a}:live") == len(allowed) - 5  # no slot left behind
    more = fill_exactly(url, "more", max_concurrent=20)
    assert len(allowed) - 5 + len(more) == 20


def test_a_block_on_another_server_stops_leased_decisions(
    url: str, servers: list[LeasingRedisState]
) -> None:
    a, b = servers

    async def run() -> tuple[bool, str]:
        await listening(a, b)
        assert (await a.reserve_async(request("before"))).ok  # a holds a lease now
        b.block("a", BlockState("hacked", "test", "now"))
        for _ in range(500):  # the invalidation travels over Redis pub/sub
            if a._gen.get("a", 0) > 0:
                break
            await asyncio.sleep(0.01)
        r = await a.reserve_async(request("after"))
        return r.ok, r.reason

    assert asyncio.run(run()) == (False, "account_blocked")


def test_a_retry_on_another_server_is_not_counted_twice(
    url: str, servers: list[LeasingRedisState]
) -> None:
    a, b = servers

    async def run() -> None:
        await listening(a, b)
        first = await a.reserve_async(request("dup"))
        await a.drain()
        again = await b.reserve_async(request("dup"))  # from b's lease: b cannot know yet
        await b.drain()
        assert first.ok and again.ok
        same = await a.reserve_async(request("dup"))  # on the same server: its first answer
        assert same.duplicate and same.reserved_e4 == WANT

    asyncio.run(run())
    assert a.read_counts([CALLS_DAY]) == [1]
    assert a.read_spends([SPEND_DAY]) == [(0, WANT)]


def test_leases_of_a_server_that_died_go_back_at_the_sweep(
    url: str, servers: list[LeasingRedisState]
) -> None:
    a = servers[0]

    async def run() -> None:
        await listening(a)
        await a.reserve_async(request("first"))  # a place's first call: exact path
        await a.reserve_async(request("second"))  # the second takes a lease
        await a.drain()

    asyncio.run(run())
    a._leases.clear()  # as if the process died: nothing is given back
    r = raw(url)
    assert int(r.get(CALLS_DAY) or 0) > 2
    sweeper = RedisState(url)
    try:
        sweeper.expire(time.time() + LEASE_TTL_S + 1)
    finally:
        sweeper.close()
    assert r.hgetall("tg:{a}:leased") == {}
    assert int(r.get(CALLS_DAY) or 0) == 2  # the calls stay counted


def test_a_counter_reset_gives_leases_back_first(
    url: str, servers: list[LeasingRedisState]
) -> None:
    a, b = servers

    async def run() -> None:
        await listening(a, b)
        for i in range(3):
            assert (await a.reserve_async(request(f"r{i}"))).ok
        await a.drain()
        b.reset(CALLS_DAY)
        await asyncio.sleep(0)
        # a's old lease is stale now; it goes back without driving the counter below zero
        assert (await a.reserve_async(request("r-after"))).ok
        await a.drain()

    asyncio.run(run())
    a.close()
    assert int(raw(url).get(CALLS_DAY) or 0) == 1
    assert a.read_counts([CALLS_DAY]) == [1]


def test_other_times_report_only_and_single_calls_take_the_exact_path(url: str) -> None:
    s = LeasingRedisState(url, calls=10)
    try:

        async def run() -> None:
            await listening(s)
            granted = s.granted
            old = request("past")
            old.now -= 86400
            assert (await s.reserve_async(old)).ok
            forced = request("forced")
            forced.force = True
            assert (await s.reserve_async(forced)).ok
            assert (await s.reserve_async(request("single"))).ok  # a quiet place's one call
            assert s.granted == granted
            assert (await s.reserve_async(request("second"))).ok  # a second: worth a lease
            assert s.granted == granted + 1

        asyncio.run(run())
    finally:
        s.close()


def test_one_server_calling_two_places_reaches_the_shared_limit_exactly(url: str) -> None:
    """Two places (their own lease each) share the day's spend: near the limit the other
    place's lease goes back before the exact path decides, so nothing is held back."""
    s = LeasingRedisState(url, calls=10, share=4)
    limit = 30 * WANT + 700

    def place(call_id: str, country: str) -> ReserveRequest:
        r = request(call_id, spend_limit=limit)
        r.counts = [Check(f"tg:{{a}}:cdc:{country}:1", NO_LIMIT, 3600, "calls_per_day_country")]
        return r

    async def run() -> list[int]:
        await listening(s)
        out = []
        for i in range(50):
            # NL twice (its second call takes a lease it then leaves unused), then DE only
            r = await s.reserve_async(place(f"p{i}", "NL" if i in (1, 3) else "DE"))
            out.append(r.reserved_e4 if r.ok else -1)
        await s.drain()
        return out

    try:
        outcomes = asyncio.run(run())
    finally:
        s.close()
    assert s.granted >= 2
    first_denied = outcomes.index(-1)
    assert set(outcomes[first_denied:]) == {-1}  # nothing was denied while budget was held
    reserved = outcomes[:first_denied]
    assert sum(reserved) == limit and reserved[-1] == 700


@pytest.mark.parametrize("written", [False, True])
def test_records_lost_with_the_connection_are_written_again(url: str, written: bool) -> None:
    """The connection drops with a batch of records in flight: before it reached Redis,
    or after Redis ran it (the reply lost). Sent again, the records land once and the
    lease's accounting stays exact."""
    s = LeasingRedisState(url, calls=10, share=4)

    async def run() -> None:
        await listening(s)
        for i in range(4):
            assert (await s.reserve_async(request(f"lost{i}"))).ok
        s._flush_carves()
        pipe = s._pipe
        assert pipe is not None
        if written:  # out on the socket before the drop: Redis runs it, the reply is lost
            pipe._ticks = 0
            pipe._flush()
        pipe.close()
        await s.drain()  # the batch goes again, on a new connection
        await s.drain()
        assert s.carve_failures == 0
        for i in range(4):
            assert (await s.get_call_async(f"lost{i}")) is not None
        lease = next(iter(s._leases.values()))
        assert lease.calls_left == lease.calls_granted - 3  # no share was credited back

    try:
        asyncio.run(run())
    finally:
        s.close()
    assert s.read_counts([CALLS_DAY]) == [4]
    assert int(raw(url).get(CALLS_DAY) or 0) == 4  # leases back: exact


def test_without_the_invalidation_channel_no_lease_is_used(url: str) -> None:
    """The pub/sub connection drops (a block elsewhere would not be heard): leases held
    are dropped, decisions take the exact path until the server has subscribed again."""
    s = LeasingRedisState(url, calls=10, share=4)

    async def run() -> None:
        await listening(s)
        for i in range(3):
            assert (await s.reserve_async(request(f"ps{i}"))).ok
        held = next(iter(s._leases.values()))
        r = raw(url)  # this server's subscription only (other tests may run beside)
        name = f"tollguard-leases-{s.server}"
        (mine,) = [c for c in r.client_list() if c["name"] == name and c["sub"] != "0"]
        r.client_kill_filter(_id=mine["id"])
        for _ in range(500):
            if not s._listening:
                break
            await asyncio.sleep(0.01)
        assert not s._listening
        before = s.exact_decisions
        assert (await s.reserve_async(request("ps-exact"))).ok
        assert s.exact_decisions == before + 1  # no lease while deaf
        for _ in range(500):  # subscribed again by itself
            if s._listening:
                break
            await asyncio.sleep(0.01)
        assert s._listening
        assert held.epoch != s._epoch  # the lease held before is not used again
        assert (await s.reserve_async(request("ps-again"))).ok
        await s.drain()

    try:
        asyncio.run(run())
    finally:
        s.close()
    assert s.read_counts([CALLS_DAY]) == [5]


@pytest.mark.parametrize(
    ("state", "lease_calls", "message"),
    [
        ("memory://", "10", "need a Redis state URL"),
        ("redis://127.0.0.1:6379/15", "-1", "must be 0 (off) or more"),
    ],
)
def test_serve_refuses_leases_it_cannot_keep(state: str, lease_calls: str, message: str) -> None:
    app = typer.Typer()
    register_all(app)
    out = CliRunner().invoke(
        app, ["serve", "--no-auth", "--state", state, "--lease-calls", lease_calls]
    )
    assert out.exit_code == 2 and message in out.output
