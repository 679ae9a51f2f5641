"""Two `tollguard serve` processes on one Redis, hammered on one account: never over the limit."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.limits.conftest import fresh_redis_url, policy_file

from .conftest import auth, keys_toml

REQUESTS = 300  # bounded: 300 authorize + their ends, 8 threads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    url: str, port: int, keys: Path, policy: Path, lease_calls: int = 0
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "tollguard.commands.serve", "serve", "--policy", str(policy),
        "--keys", str(keys), "--state", url, "--port", str(port), "--sweep-interval", "0",
        "--lease-calls", str(lease_calls),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"tollguard serve exited: {err[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail(f"tollguard serve on port {port} did not come up in 30 s")


def amount_e4(r: redis.Redis, key: str, field: str) -> Decimal:
    """A hash field counted in 1/10000 of the currency (absent: 0), as an amount."""
    raw = r.hget(key, field)
    assert not isinstance(raw, bytes)  # the client decodes responses
    return Decimal(raw or 0) / 10_000


@contextlib.contextmanager
def two_servers(
    tmp_path: Path, limits: str, lease_calls: int = 0
) -> Iterator[tuple[list[httpx.Client], redis.Redis]]:
    """Two `tollguard serve` processes on this test worker's flushed Redis database,
    account 'hammer' with ``limits`` (TOML lines); clients to each, and a client of that
    database. Both are stopped on the way out (SIGTERM: they give back what they hold)."""
    url = fresh_redis_url()
    keys = tmp_path / "keys.toml"
    keys.write_text(keys_toml().replace('"free"]', '"free", "hammer"]'))
    policy = policy_file(tmp_path / "policy.toml", "\n[accounts.hammer.limits]\n" + limits)
    ports = [_free_port(), _free_port()]
    procs = [_start(url, p, keys, policy, lease_calls) for p in ports]
    clients: list[httpx.Client] = []
    try:
        for p, proc in zip(ports, procs, strict=True):
            _wait(p, proc)
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=10) for p in ports]
        yield clients, redis.Redis.from_url(url, decode_responses=True)
    finally:
        for c in clients:
            c.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _odd_calls(r: redis.Redis, results: list[Any]) -> list[tuple[str, dict[str, str]]]:
    """The calls whose record does not say what the test did to them (for the failure
    message): an allowed call that the test ended must be 'ended' at cost 500 (e4)."""
    odd = []
    for i, res in enumerate(results):
        if res[0] != "allow":
            continue
        h = r.hgetall(f"tg:call:h{i}")
        assert isinstance(h, dict)
        ended = i % 3 == 0
        if ended != (h.get("state") == "ended") or (ended and h.get("cost") != "500"):
            odd.append((f"h{i}", {str(k): str(v) for k, v in h.items()}))
    return odd


def test_two_servers_never_reserve_past_the_limit(tmp_path: Path) -> None:
    # 'small' allows 2 calls/minute; a roomier account: EUR 1/day, 250 calls
    limits = "max_spend_per_day = 1\nmax_calls_per_day = 250\nmax_call_duration_s = 120\n"
    with two_servers(tmp_path, limits) as (clients, rc):
        at = "2024-06-03T12:00:00+02:00"

        def one(i: int) -> tuple[str, int, str]:
            c = clients[i % 2]
            # mobile 0.05/min in 60 s steps: each grant of 120 s reserves 0.10
            body = {"account": "hammer", "caller": "1", "callee": "0612345678",
                    "call_id": f"h{i}", "at": at}  # fmt: skip
            r = c.post("/v1/authorize", json=body, headers=auth("switch"))
            d = r.json()
            if d["decision"] == "allow" and i % 3 == 0:  # some calls end, at a real cost
                e = clients[(i + 1) % 2].post(
                    f"/v1/calls/h{i}/end", json={"billsec": 30}, headers=auth("switch")
                )
                assert e.status_code == 200
            return d["decision"], d["max_duration_s"], d["reason"]

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(REQUESTS)))
        allowed = [r for r in results if r[0] == "allow"]
        denied = [r for r in results if r[0] == "deny"]
        assert {r[2] for r in denied} <= {"spend_per_day", "calls_per_day"}
        counters = (
            clients[0]
            .get("/v1/accounts/hammer/counters", params={"at": at}, headers=auth("admin"))
            .json()
        )
        spent = Decimal(counters["spend_day"]["spent"])
        reserved = Decimal(counters["spend_day"]["reserved"])
        assert spent + reserved <= Decimal(1)
        # exact counters: every allowed call counted once, every ended call settled at 0.05
        ended = sum(1 for i, r in enumerate(results) if r[0] == "allow" and i % 3 == 0)
        assert counters["calls_day"] == len(allowed)
        assert counters["concurrent"] == len(allowed) - ended
        assert spent == Decimal("0.05") * ended, str(_odd_calls(rc, results))
        live = len(allowed) - ended
        assert reserved == sum(
            (Decimal("0.10") if r[1] == 120 else Decimal("0.05")) for i, r in enumerate(results)
            if r[0] == "allow" and i % 3 != 0
        )  # fmt: skip
        assert live > 0 and len(denied) > 0  # the limit was really reached


def test_two_servers_with_quota_leases_keep_the_limits_and_exact_counters(tmp_path: Path) -> None:
    """Decisions from leases (time now, so leases apply), ends on the other server at once
    (its record may still be on its way), then both stopped: the counters in Redis are
    exact and within the limits, and no lease is left behind."""
    limits = "max_spend_per_day = 20\nmax_calls_per_day = 250\nmax_call_duration_s = 120\n"
    with two_servers(tmp_path, limits, lease_calls=20) as (clients, r):

        def one(i: int) -> tuple[str, int, str, int]:
            c = clients[i % 2]
            body = {"account": "hammer", "caller": "1", "callee": "0612345678",
                    "call_id": f"h{i}"}  # fmt: skip
            d = c.post("/v1/authorize", json=body, headers=auth("switch")).json()
            ended = 0
            if d["decision"] == "allow" and i % 3 == 0:
                e = clients[(i + 1) % 2].post(
                    f"/v1/calls/h{i}/end", json={"billsec": 30}, headers=auth("switch")
                )
                assert e.status_code == 200, e.text
                ended = 1
            return d["decision"], d["max_duration_s"], d["reason"], ended

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(REQUESTS)))
        metrics = [c.get("/metrics").text for c in clients]
    allowed = [r for r in results if r[0] == "allow"]
    assert {r[2] for r in results if r[0] == "deny"} <= {"spend_per_day", "calls_per_day"}
    assert len(allowed) < REQUESTS  # a limit was reached
    assert list(r.scan_iter("tg:lease:*")) == [] and r.hgetall("tg:{hammer}:leased") == {}
    (calls_key,) = r.scan_iter("tg:{hammer}:cd:*")
    (spend_key,) = r.scan_iter("tg:{hammer}:sd:*")
    ended = sum(x[3] for x in allowed)
    assert int(r.get(calls_key) or 0) == len(allowed) <= 250
    spent, reserved = (amount_e4(r, spend_key, f) for f in ("s", "r"))
    assert spent == Decimal("0.05") * ended, str(_odd_calls(r, results))
    assert reserved == sum(
        Decimal("0.10") if x[1] == 120 else Decimal("0.05") for x in allowed if not x[3]
    )
    assert spent + reserved <= 20
    assert r.zcard("tg:{hammer}:live") == len(allowed) - ended
    from_leases = sum(1 for k in r.scan_iter("tg:call:h*") if r.hexists(k, "lease"))
    assert from_leases > len(allowed) // 2  # most decisions were taken from leases
    reported = 0.0  # each server's /metrics counts its answers from leases
    for text in metrics:
        (line,) = [x for x in text.splitlines() if x.startswith("tollguard_lease_decisions_total")]
        reported += float(line.split()[-1])
    assert reported == from_leases
