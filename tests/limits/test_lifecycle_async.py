"""answer, end and the expiry sweep from the event loop, against the real Redis.

The async forms must give the same records and counters as the blocking ones (and as
the memory backend), and the API's authorize (including rebuilding an account's plan)
and lifecycle handlers must not touch the blocking redis-py client at all: with that
client pointed at a closed port they still work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from datetime import timedelta
from typing import Any

import redis
from fastapi.testclient import TestClient

from tollguard.api.app import create_app
from tollguard.limits.memory import MemoryState
from tollguard.limits.redis_state import RedisState
from tollguard.limits.service import AuthorizeService
from tollguard.policy import Policy

from .test_redis_pipe import MON_NOON

ACCOUNTS = ("acme", "small", "typed", "watch")


def _strip(call: Any) -> dict[str, Any]:
    """A CallState as a dict, without the per-backend bookkeeping in its meta."""
    d = dataclasses.asdict(call)
    d["meta"] = {k: v for k, v in d["meta"].items() if k not in ("spends", "hold")}
    return d


async def _lifecycle(s: AuthorizeService, use_async: bool) -> list[Any]:
    """Authorize calls on several accounts; answer some, end some, let the rest expire."""
    out: list[Any] = []
    for i, acct in enumerate(ACCOUNTS * 3):
        cid = f"lc{i}"
        d = await s.authorize_async(acct, "1", "0612345678", cid, MON_NOON)
        out.append((d.decision, d.reason, d.max_duration_s))
        if d.decision != "allow":
            continue
        at = MON_NOON + timedelta(seconds=5)
        if i % 3 != 2:
            call = await s.answer_async(cid, at) if use_async else s.answer(cid, at)
            out.append(_strip(call))
        if i % 3 == 0:
            end_at = at + timedelta(seconds=65)
            res = await s.end_async(cid, at=end_at) if use_async else s.end(cid, at=end_at)
            out.append((res[0], _strip(res[1]), res[2]))
            again = await s.end_async(cid, billsec=9) if use_async else s.end(cid, billsec=9)
            out.append((again[0], again[2]))  # already ended: charged nothing more
    # ringing calls drop after the ring timeout, answered ones after their grant + grace
    for later in (timedelta(minutes=4), timedelta(hours=5)):
        at = MON_NOON + later
        out.append(await s.expire_async(at) if use_async else s.expire(at))
    for acct in ACCOUNTS:
        out.append(s.counters(acct, MON_NOON))
    return out


def test_async_lifecycle_equals_sync_and_memory(policy: Policy, url: str) -> None:
    expected = asyncio.run(_lifecycle(AuthorizeService(policy, MemoryState()), False))
    assert asyncio.run(_lifecycle(AuthorizeService(policy, MemoryState()), True)) == expected
    assert sum(1 for x in expected if isinstance(x, int) and x > 0) == 2  # both sweeps settled
    for use_async in (False, True):
        redis.Redis.from_url(url).flushdb()
        state = RedisState(url)
        got = asyncio.run(_lifecycle(AuthorizeService(policy, state), use_async))
        assert got == expected, f"async={use_async}"
        # the sweep took every account off the set of accounts with live calls
        assert redis.Redis.from_url(url).scard("tg:accounts-live") == 0
        state.close()


def test_authorize_and_lifecycle_handlers_never_use_the_blocking_client(
    policy: Policy, url: str
) -> None:
    state = RedisState(url)
    service = AuthorizeService(policy, state)
    app = create_app(service, sweep_interval_s=0)
    at = MON_NOON.isoformat()
    with TestClient(app, raise_server_exceptions=False) as client:
        body = {"account": "acme", "caller": "1", "callee": "0612345678", "at": at}
        first = client.post("/v1/authorize", json={**body, "call_id": "warm"})
        assert first.json()["decision"] == "allow"  # the plan is built (and cached) now
        limits = {"limits": {"max_calls_per_day": 2, "max_spend_per_day": 500}}
        assert client.put("/v1/accounts/acme/policy", json=limits).status_code == 200
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            dead = sock.getsockname()[1]  # closed again: nobody listens there
        blocking, state.r = state.r, redis.Redis(port=dead, socket_connect_timeout=1)
        service.invalidate("acme")  # the plan is rebuilt: its override read must not block
        try:
            assert client.post("/v1/authorize", json={**body, "call_id": "nb"}).status_code == 200
            third = client.post("/v1/authorize", json={**body, "call_id": "over"}).json()
            assert third["reason"] == "calls_per_day"  # the override, read over the pipe
            a = client.post("/v1/calls/nb/answer", json={"at": at})
            assert (a.status_code, a.json()["state"]) == (200, "answered")
            later = (MON_NOON + timedelta(seconds=61)).isoformat()
            e = client.post("/v1/calls/nb/end", json={"at": later})
            assert (e.status_code, e.json()["status"], e.json()["cost"]) == (200, "ended", "0.1000")
            again = client.post("/v1/calls/nb/end", json={"billsec": 5})
            assert again.json()["status"] == "already_ended"
            missing = client.post("/v1/calls/nope/answer", json={})
            assert missing.status_code == 404
            x = client.post("/v1/calls/expire", params={"at": "2024-06-04T12:00:00+00:00"})
            assert x.json() == {"expired": 1}  # 'warm' was never answered: released
            # and the blocking client really is unusable here
            assert client.get("/v1/accounts/acme/counters").status_code == 503
        finally:
            state.r.close()
            state.r = blocking
        c = client.get("/v1/accounts/acme/counters", params={"at": at}).json()
    assert c["spend_day"] == {"spent": "0.1000", "reserved": "0.0000"}
    assert c["calls_day"] == 2 and c["concurrent"] == 0
    state.close()
