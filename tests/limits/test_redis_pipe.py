"""authorize from the event loop: the pipelined Redis connection and authorize_async.

Against the real Redis (db per xdist worker, flushed per test); no mocks, no timing.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tollguard.api.app import create_app
from tollguard.limits.memory import MemoryState
from tollguard.limits.redis_pipe import PipelinedRedis, _Protocol, encode_command, parse_reply
from tollguard.limits.redis_state import RedisState
from tollguard.limits.service import AuthorizeService
from tollguard.limits.state import StateBackend
from tollguard.policy import Policy, load_policy

from .conftest import policy_file

MON_NOON = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)


# A sequence that reaches most outcomes: allow, policy denies, count and spend limits,
# report-only, a retried call id, and calls that end in between.
SEQUENCE: list[tuple[str, str, str, datetime]] = [
    ("acme", "0201234567", "s1", MON_NOON),
    ("acme", "00670771234567", "s2", MON_NOON),
    ("acme", "0201234567", "s1", MON_NOON),  # retry: the first grant
    ("small", "0612345678", "s3", MON_NOON),
    ("small", "0612345678", "s4", MON_NOON),
    ("small", "0612345678", "s5", MON_NOON),
    ("small", "0612345678", "s6", MON_NOON + timedelta(minutes=2)),
    ("calls-only", "0201234567", "s7", MON_NOON),
    ("calls-only", "0201234567", "s8", MON_NOON),
    ("watch", "0201234567", "s9", MON_NOON),
    ("watch", "0201234567", "s10", MON_NOON),  # report-only: allowed, would deny
    ("watch", "0201234567", "s10", MON_NOON),  # and its retry
    ("typed", "0049301234567", "s11", MON_NOON),
    ("typed", "0049301234567", "s12", MON_NOON),
    ("typed", "0201234567", "s13", MON_NOON),
    ("typed", "0201234567", "s14", MON_NOON),
]


def _run_sync(s: AuthorizeService) -> list[dict[str, Any]]:
    out = []
    for i, (acct, callee, cid, at) in enumerate(SEQUENCE):
        out.append(s.authorize(acct, "100", callee, cid, at).to_dict())
        if i == 4:
            s.end("s3", billsec=30, at=at + timedelta(seconds=40))
    return out


async def _run_async(s: AuthorizeService) -> list[dict[str, Any]]:
    out = []
    for i, (acct, callee, cid, at) in enumerate(SEQUENCE):
        out.append((await s.authorize_async(acct, "100", callee, cid, at)).to_dict())
        if i == 4:
            s.end("s3", billsec=30, at=at + timedelta(seconds=40))
    return out


def test_async_decisions_equal_sync_and_memory(policy: Policy, url: str) -> None:
    expected = _run_sync(AuthorizeService(policy, MemoryState()))
    assert {d["reason"] for d in expected} >= {
        "ok", "country_blocked", "spend_per_hour", "concurrent_calls",
        "report_only", "calls_per_day_country", "spend_per_day_country",
    }  # fmt: skip
    assert asyncio.run(_run_async(AuthorizeService(policy, MemoryState()))) == expected
    for run_async in (False, True):
        redis.Redis.from_url(url).flushdb()
        state = RedisState(url)
        s = AuthorizeService(policy, state)
        got = asyncio.run(_run_async(s)) if run_async else _run_sync(s)
        assert got == expected, f"async={run_async}"
        # what the script stored reads back like the memory backend's record
        call = state.get_call("s10")
        assert call is not None and call.meta["reason"] == "calls_per_day"
        assert call.meta["forced"] == "1" and call.meta["limited"] == "0"
        state.close()


def test_concurrent_reserves_never_exceed_the_limit(url: str, tmp_path: Path) -> None:
    """Many decisions in flight on one connection (one pipeline): exact counters."""
    path = policy_file(
        tmp_path / "policy.toml",
        "\n[accounts.hammer.limits]\nmax_spend_per_day = 1\nmax_call_duration_s = 120\n",
    )
    policy = load_policy(path)
    state = RedisState(url)
    s = AuthorizeService(policy, state)

    async def hammer() -> list[Any]:
        calls = (
            s.authorize_async("hammer", "1", "0612345678", f"h{i}", MON_NOON) for i in range(60)
        )
        return await asyncio.gather(*calls)

    decisions = asyncio.run(hammer())
    allowed = [d for d in decisions if d.decision == "allow"]
    assert {d.reason for d in decisions if d.decision == "deny"} == {"spend_per_day"}
    # mobile 0.05/min in 60 s steps: a grant of 120 s reserves 0.10 => exactly 10 fit
    assert len(allowed) == 10
    c = s.counters("hammer", MON_NOON)
    assert c["spend_day"] == {"spent": "0.0000", "reserved": "1.0000"}
    assert c["concurrent"] == 10 and c["calls_day"] == 10
    state.close()


def test_first_commands_of_a_new_connection_use_the_right_db(rstate: RedisState, url: str) -> None:
    """Commands sent while the connection is still being set up (SELECT) must not land in
    another database."""
    from tollguard.limits.state import Check, ReserveRequest

    def req(i: int) -> ReserveRequest:
        return ReserveRequest(
            account="db", call_id=f"db-{i}", now=1000.0,
            counts=[Check("tg:{db}:cd:1", -1, 600, "calls_per_day")], spends=[],
            max_concurrent=-1, want_e4=0, min_e4=0, ring_expires_at=1180.0, hold_s=600.0,
        )  # fmt: skip

    async def burst() -> None:
        await asyncio.gather(*(rstate.reserve_async(req(i)) for i in range(20)))

    asyncio.run(burst())
    assert redis.Redis.from_url(url).get("tg:{db}:cd:1") == b"20"
    assert all(rstate.get_call(f"db-{i}") is not None for i in range(20))


def test_reconnects_after_the_connection_is_killed_and_script_flushed(
    policy: Policy, rstate: RedisState, url: str
) -> None:
    s = AuthorizeService(policy, rstate)
    admin = redis.Redis.from_url(url)

    async def scenario() -> list[str]:
        out = [(await s.authorize_async("acme", "1", "0201234567", "k1", MON_NOON)).decision]
        pipe = rstate._pipe
        assert pipe is not None and pipe._transport is not None
        host, port = pipe._transport.get_extra_info("sockname")[:2]
        admin.client_kill_filter(addr=f"{host}:{port}")
        await asyncio.sleep(0.05)  # let the loop see the closed socket
        admin.script_flush()  # Redis forgot the script too: EVALSHA -> NOSCRIPT -> EVAL
        out.append((await s.authorize_async("acme", "1", "0201234567", "k2", MON_NOON)).decision)
        return out

    assert asyncio.run(scenario()) == ["allow", "allow"]
    # and a second event loop (a restarted app) gets a connection of its own
    d = asyncio.run(s.authorize_async("acme", "1", "0201234567", "k3", MON_NOON))
    assert d.decision == "allow"
    assert s.counters("acme", MON_NOON)["calls_day"] == 3


def test_killed_connection_fails_pending_commands_with_connection_error(
    rstate: RedisState, url: str
) -> None:
    pipe = rstate._pipe
    assert pipe is not None
    admin = redis.Redis.from_url(url)

    async def scenario() -> None:
        await pipe.execute([b"PING"])
        assert pipe._transport is not None
        host, port = pipe._transport.get_extra_info("sockname")[:2]
        # BLPOP holds the reply back; killing the client fails it
        blocked = asyncio.ensure_future(pipe.execute([b"BLPOP", b"tg:test:never", b"0"]))
        await asyncio.sleep(0.05)
        admin.client_kill_filter(addr=f"{host}:{port}")
        with pytest.raises(redis.ConnectionError):
            await blocked
        assert await pipe.execute([b"PING"]) == "PONG"

    asyncio.run(scenario())


def test_a_server_that_never_answers_times_out() -> None:
    """A stuck Redis must fail the request (503, the switch applies its fail mode), not
    hang it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    t = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    t.start()
    pipe = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)

    async def scenario() -> None:
        with pytest.raises(redis.TimeoutError):
            await pipe.execute([b"PING"])

    try:
        asyncio.run(scenario())
    finally:
        pipe.close()
        for c in accepted:
            c.close()
        listener.close()


def test_unreachable_redis_is_a_503_problem(policy: Policy) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    state: StateBackend = RedisState(f"redis://127.0.0.1:{port}/0")
    app = create_app(AuthorizeService(policy, state), sweep_interval_s=0)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post(
            "/v1/authorize",
            json={"account": "acme", "caller": "1", "callee": "0201234567", "call_id": "x"},
        )
    assert r.status_code == 503
    assert r.json()["type"].endswith("state-unavailable")


def test_api_over_redis_authorize_then_end(policy: Policy, rstate: RedisState) -> None:
    app = create_app(AuthorizeService(policy, rstate), sweep_interval_s=0)
    at = MON_NOON.isoformat()
    with TestClient(app) as client:
        body = {"account": "small", "caller": "1", "callee": "0612345678", "call_id": "api1"}
        d = client.post("/v1/authorize", json={**body, "at": at}).json()
        assert (d["decision"], d["detail"]) == ("allow", {"reserved": "0.5000"})
        again = client.post("/v1/authorize", json={**body, "at": at}).json()
        assert again["detail"] == {"reserved": "0.5000", "duplicate": True}
        e = client.post("/v1/calls/api1/end", json={"billsec": 61})
        assert e.status_code == 200
        c = client.get("/v1/accounts/small/counters", params={"at": at}).json()
    assert c["spend_hour"] == {"spent": "0.1000", "reserved": "0.0000"}
    assert c["calls_day"] == 1 and c["concurrent"] == 0


def test_resp_replies_split_anywhere_are_parsed() -> None:
    replies = (
        b"*7\r\n:0\r\n:3\r\n:-5\r\n:10\r\n:1\r\n$-1\r\n*2\r\n$3\r\nabc\r\n+OK\r\n"
        b"-NOSCRIPT No matching script\r\n$0\r\n\r\n*-1\r\n"
    )
    value, _ = parse_reply(replies, 0)
    assert value == [0, 3, -5, 10, 1, None, [b"abc", "OK"]]
    expected = [value, redis.ResponseError("x"), b"", None]

    class Owner:  # what _Protocol needs of its connection
        def __init__(self) -> None:
            self._pending: Any = __import__("collections").deque()
            self._proto: Any = None

        def _fail(self, exc: Exception) -> None:
            raise AssertionError(exc)

    for cut in range(1, len(replies)):
        loop = asyncio.new_event_loop()
        owner = Owner()
        proto = _Protocol(owner)  # type: ignore[arg-type]
        owner._proto = proto
        futs = [loop.create_future() for _ in expected]
        owner._pending.extend((f, 0.0) for f in futs)
        proto.data_received(replies[:cut])
        proto.data_received(replies[cut:])
        got = [f.result() for f in futs]
        assert got[0] == expected[0] and got[2:] == expected[2:]
        assert isinstance(got[1], redis.ResponseError) and str(got[1]).startswith("NOSCRIPT")
        loop.close()
    assert encode_command([b"GET", b"k\xc3\xa9"]) == b"*2\r\n$3\r\nGET\r\n$3\r\nk\xc3\xa9\r\n"


def test_every_counter_key_gets_its_period_ttl(
    policy: Policy, rstate: RedisState, url: str
) -> None:
    """Counter keys are created by the script; counters without a limit are not read
    before they are written, so their TTL is set on the write: none may be left without."""
    s = AuthorizeService(policy, rstate)
    cases = [
        ("acme", "0612345678", "t1"),  # per-country/type spends without a limit, money reserved
        ("typed", "0201234567", "t2"),  # a per-country spend limit
        ("calls-only", "0201234567", "t3"),  # no spend limit at all: reserves 0
    ]
    for acct, callee, cid in cases:
        assert s.authorize(acct, "1", callee, cid, MON_NOON).decision == "allow"
    s.end("t1", billsec=30, at=MON_NOON + timedelta(seconds=40))  # r back to 0 ...
    assert s.authorize("acme", "1", "0612345678", "t4", MON_NOON).decision == "allow"  # ... and up
    admin = redis.Redis.from_url(url)
    keys = [k.decode() for k in admin.scan_iter("tg:{*}:*")]
    counters = [k for k in keys if k.split(":")[2][0] in "cs" and not k.endswith(":live")]
    kinds = {k.split(":")[2] for k in counters}
    assert kinds >= {"cm", "cd", "cdc", "cdt", "sh", "sd", "sm", "sdc", "sdt"}
    assert all(admin.ttl(k) > 0 for k in counters), {k: admin.ttl(k) for k in counters}
