"""Backends for the limits tests: memory, memory+SQLite, and the real Redis server."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tollguard.limits.memory import MemoryState
from tollguard.limits.redis_state import RedisState
from tollguard.limits.state import StateBackend
from tollguard.policy import Policy, load_policy

DATA = Path(__file__).parent / "data"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def ensure_redis() -> None:
    """Use the local Redis; start it if it is down. Fail (never skip) when it cannot run."""
    client = redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=1)
    try:
        client.ping()
        return
    except redis.ConnectionError:
        pass
    if shutil.which("redis-server") is None:
        pytest.fail("Redis is needed for these tests: no server on 127.0.0.1:6379, no redis-server")
    os.makedirs("/var/lib/redis", exist_ok=True)
    os.makedirs("/var/log/redis", exist_ok=True)
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
         "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
         "--logfile", "/var/log/redis/ci.log"],
        check=False, timeout=20,
    )  # fmt: skip
    if not answers(client, seconds=5.0):
        pytest.fail("could not start redis-server on 127.0.0.1:6379 (see /var/log/redis/ci.log)")


def answers(client: redis.Redis, seconds: float) -> bool:
    """Whether a Redis server (just started) answers PING within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def redis_db() -> int:
    """A database of its own per xdist worker (12, 13, ...), flushed per test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 12 + int(worker[2:] or 0) % 4


def fresh_redis_url() -> str:
    """This worker's database on the local Redis, flushed."""
    ensure_redis()
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db()}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def url() -> str:
    return fresh_redis_url()


@pytest.fixture
def rstate(url: str) -> Iterator[RedisState]:
    state = RedisState(url)
    yield state
    state.close()


@pytest.fixture
def policy() -> Policy:
    return load_policy(DATA / "policy.toml")


def policy_file(path: Path, extra: str) -> Path:
    """The test policy written to ``path`` with its deck by absolute path and ``extra``
    TOML appended (an account of a test's own)."""
    text = (DATA / "policy.toml").read_text()
    path.write_text(text.replace('rates = "rates.csv"', f'rates = "{DATA / "rates.csv"}"') + extra)
    return path


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    state: StateBackend
    if request.param == "memory":
        state = MemoryState()
    elif request.param == "sqlite":
        state = MemoryState(tmp_path / "state.db")
    else:
        state = RedisState(fresh_redis_url())
    yield state
    state.close()
