"""The state behind authorize: counters, reservations, live calls, blocks, overrides, audit.

One small interface, three implementations: ``MemoryState`` (in-process, optionally
persisted to SQLite) and ``RedisState`` (shared by many servers, atomic Lua scripts).
Every backend implements the same semantics; ``tests/limits`` runs the same suite on each.

Money is integer ten-thousandths (e4). A spend counter holds ``s`` (settled spend) and
``r`` (reserved for live calls). A count counter is an integer.

Semantics of ``reserve`` (atomic):
1. a call id seen before returns the earlier answer (switch retries never double count);
2. calls of the account whose expiry passed (event time) are settled first;
3. checks in order: manual block, concurrent calls, each count limit (value + 1 > limit),
   each spend limit (remaining = limit - s - r; below ``min_e4`` means no budget);
4. on success (or when ``force``: report-only) counts are incremented, the reservation
   ``min(want_e4, smallest remaining)`` is added to ``r`` of every spend key, and the call
   is recorded as live until ``ring_expires_at`` (moved to answer + ``hold_s`` on answer).

Expiry: a live call that never reported its end is settled when its expiry passes:
answered calls are charged their whole reservation (the cost of the granted maximum
duration, the most they can have cost), unanswered calls release it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

NO_LIMIT = -1


@dataclass(frozen=True, slots=True)
class Check:
    """One counter the call touches; ``limit`` NO_LIMIT means count only."""

    key: str
    limit: int
    ttl_s: int
    reason: str


@dataclass(slots=True)
class ReserveRequest:
    account: str
    call_id: str
    now: float  # event time, epoch seconds
    counts: list[Check]
    spends: list[Check]
    max_concurrent: int  # NO_LIMIT for none
    want_e4: int  # reservation wanted: cost of the longest grant (0 when not rated)
    min_e4: int  # the least budget that buys the first billing increment
    ring_expires_at: float  # an unanswered call is dropped at this event time
    hold_s: float  # answered: expires at answer + hold_s
    force: bool = False  # report-only: record the call even when a check fails
    meta: dict[str, str] = field(default_factory=dict)  # for settlement (deck, e164, ...)


@dataclass(slots=True)
class ReserveResult:
    ok: bool
    reason: str = ""  # first failing check ("" none)
    value: int = 0  # the counter's value at the failing check
    limit: int = 0
    reserved_e4: int = 0
    remaining_e4: int | None = None  # least budget left before this reservation; None: no limit
    duplicate: bool = False
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class CallState:
    call_id: str
    account: str
    state: str  # ringing | answered | ended | expired
    reserved_e4: int
    started: float
    answered: float | None
    expires: float
    meta: dict[str, str]
    cost_e4: int | None = None


@dataclass(slots=True)
class EndResult:
    status: str  # "ended" | "unknown" | "already_ended"
    call: CallState | None = None


@dataclass(frozen=True, slots=True)
class BlockState:
    reason: str
    by: str
    at: str


class StateBackend(Protocol):
    def reserve(self, req: ReserveRequest) -> ReserveResult: ...

    async def reserve_async(self, req: ReserveRequest) -> ReserveResult:
        """``reserve`` for the event loop: must not block it on I/O."""
        ...

    def get_call(self, call_id: str) -> CallState | None: ...

    def answer(self, call_id: str, now: float, expires_at: float) -> CallState | None: ...

    def end(self, call_id: str, cost_e4: int, now: float) -> EndResult: ...

    def expire(self, now: float, account: str | None = None) -> int: ...

    # The lifecycle from the event loop (answer, end, the expiry sweep): must not block it.
    async def get_call_async(self, call_id: str) -> CallState | None: ...

    async def answer_async(
        self, call_id: str, now: float, expires_at: float
    ) -> CallState | None: ...

    async def end_async(self, call_id: str, cost_e4: int, now: float) -> EndResult: ...

    async def expire_async(self, now: float, account: str | None = None) -> int: ...

    def read_counts(self, keys: list[str]) -> list[int]: ...

    def read_spends(self, keys: list[str]) -> list[tuple[int, int]]: ...

    def concurrent(self, account: str) -> int: ...

    def reset(self, key: str) -> None: ...

    def release_live_calls(self, account: str) -> int: ...

    def block(self, account: str, state: BlockState) -> None: ...

    def unblock(self, account: str) -> bool: ...

    def get_block(self, account: str) -> BlockState | None: ...

    def get_override(self, account: str) -> dict[str, Any] | None: ...

    async def get_override_async(self, account: str) -> dict[str, Any] | None: ...

    def set_override(self, account: str, value: dict[str, Any] | None) -> None: ...

    def append_audit(self, entry: dict[str, Any]) -> None: ...

    def audit(self, limit: int = 200) -> list[dict[str, Any]]: ...

    async def shutdown(self) -> None:
        """The server is stopping (its event loop still runs): hand back what it holds."""
        ...

    def close(self) -> None: ...


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
