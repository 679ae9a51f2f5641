"""Pick a state backend from a URL: memory://, sqlite:///path.db, redis://host:port/db."""

from __future__ import annotations

from tollguard.limits.leases import LeasingRedisState
from tollguard.limits.memory import MemoryState
from tollguard.limits.redis_state import RedisState
from tollguard.limits.state import StateBackend


class StateURLError(ValueError):
    pass


def open_state(url: str, lease_calls: int = 0) -> StateBackend:
    """``lease_calls`` > 0: Redis decides through quota leases of that many calls."""
    if lease_calls < 0:
        raise StateURLError("--lease-calls must be 0 (off) or more")
    if lease_calls and not url.startswith(("redis://", "rediss://", "unix://")):
        raise StateURLError("quota leases (--lease-calls) need a Redis state URL")
    if url in ("memory", "memory://"):
        return MemoryState()
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise StateURLError(
                "sqlite:///PATH needs a file path, e.g. sqlite:///tollguard-state.db"
            )
        return MemoryState(path)
    if url.startswith(("redis://", "rediss://", "unix://")):
        state = LeasingRedisState(url, calls=lease_calls) if lease_calls else RedisState(url)
        try:
            state.ping()
        except Exception as exc:
            raise StateURLError(f"cannot reach Redis at {url}: {exc}") from None
        return state
    raise StateURLError(f"unknown state URL {url!r}; use memory://, sqlite:///FILE or redis://HOST")
