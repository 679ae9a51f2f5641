"""A Redis restart under quota leases: a private redis-server is stopped and started again
(its data and scripts gone) while a server holds leases; decisions carry on."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import redis

from tollguard.limits.leases import LeasingRedisState

from .conftest import answers
from .test_leases import listening, request


def _redis_server(port: int, d: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(d)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    if answers(redis.Redis(port=port, socket_connect_timeout=0.5), seconds=5.0):
        return proc
    proc.kill()
    pytest.fail(f"redis-server on port {port} did not start")


def test_decisions_carry_on_across_a_redis_restart(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("this test needs redis-server (Debian: apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = _redis_server(port, tmp_path)
    state = LeasingRedisState(f"redis://127.0.0.1:{port}/0", calls=10, share=4)
    try:

        async def run() -> list[str]:
            nonlocal proc
            await listening(state)
            for i in range(5):
                assert (await state.reserve_async(request(f"before{i}"))).ok
            await state.drain()
            assert state._leases  # a lease is held
            proc.terminate()
            proc.wait(timeout=10)
            proc = _redis_server(port, tmp_path)  # empty, no scripts loaded
            outcomes = []
            for i in range(30):  # until re-subscribed some go exact, then leases again
                try:
                    r = await state.reserve_async(request(f"after{i}"))
                    outcomes.append("ok" if r.ok else r.reason)
                except redis.ConnectionError:
                    outcomes.append("unavailable")  # the API answers 503: fail mode
                await asyncio.sleep(0.05)
            await state.drain()
            return outcomes

        outcomes = asyncio.run(run())
        assert set(outcomes) <= {"ok", "unavailable"}
        assert outcomes[-10:] == ["ok"] * 10  # it recovered by itself
        assert state.carve_failures == 0
        recorded = sum(
            state.get_call(f"after{i}") is not None for i, o in enumerate(outcomes) if o == "ok"
        )
        assert recorded == outcomes.count("ok")  # every allowed call has its record
        assert state.read_counts(["tg:{a}:cd:1"]) == [outcomes.count("ok")]
    finally:
        state.close()
        proc.terminate()
        proc.wait(timeout=10)
