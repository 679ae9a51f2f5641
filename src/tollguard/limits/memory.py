"""In-process state, optionally persisted to SQLite (write-through, WAL).

One lock serializes every operation, so check-and-reserve is atomic within the
process. With a SQLite path, each operation writes the rows it changed before it
returns, so a restart keeps today's counters, live calls, blocks, overrides and audit.
SQLite is a journal here, not the read path: reads are served from memory.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tollguard.limits.state import (
    NO_LIMIT,
    BlockState,
    CallState,
    EndResult,
    ReserveRequest,
    ReserveResult,
    dumps,
)

TOMBSTONE_S = 86400  # an ended call is remembered this long (idempotent end/retry)
EXPIRE_BATCH = 20  # stale calls settled per reserve, bounded


class MemoryState:
    def __init__(self, sqlite_path: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._spends: dict[str, list[int]] = {}
        self._calls: dict[str, CallState] = {}
        self._live: dict[str, dict[str, float]] = {}
        # Per account, (expiry, call id) in a heap so expiry never scans all live calls;
        # entries whose call ended or got a new expiry are skipped when they surface.
        self._expiry_heap: dict[str, list[tuple[float, str]]] = {}
        self._blocks: dict[str, BlockState] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        self._audit: list[dict[str, Any]] = []
        self._wall_expiry: dict[str, float] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._ops = 0
        self._db: sqlite3.Connection | None = None
        if sqlite_path is not None:
            self._open(str(sqlite_path))

    # -- persistence --------------------------------------------------------
    def _open(self, path: str) -> None:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS kv (kind TEXT NOT NULL, key TEXT NOT NULL,"
            " value TEXT NOT NULL, wall_expires REAL, PRIMARY KEY (kind, key))"
        )
        db.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, entry TEXT NOT NULL)")
        now = time.time()
        db.execute("DELETE FROM kv WHERE wall_expires IS NOT NULL AND wall_expires < ?", (now,))
        for kind, key, value, wall in db.execute("SELECT kind, key, value, wall_expires FROM kv"):
            data = json.loads(value)
            if wall is not None:
                self._wall_expiry[key] = wall
            if kind == "count":
                self._counts[key] = int(data)
            elif kind == "spend":
                self._spends[key] = [int(data[0]), int(data[1])]
            elif kind == "call":
                call = CallState(**data)
                self._calls[key] = call
                if call.state in ("ringing", "answered"):
                    self._set_live(call.account, call.call_id, call.expires)
            elif kind == "block":
                self._blocks[key] = BlockState(**data)
            elif kind == "pol":
                self._overrides[key] = data
        self._audit = [json.loads(e) for (e,) in db.execute("SELECT entry FROM audit ORDER BY id")]
        self._db = db

    def _flush(self) -> None:
        if self._db is None or not self._dirty:
            self._dirty.clear()
            return
        rows: list[tuple[str, str, str, float | None]] = []
        gone: list[tuple[str, str]] = []
        for kind, key in self._dirty:
            value: Any
            if kind == "count":
                value = self._counts.get(key)
            elif kind == "spend":
                value = self._spends.get(key)
            elif kind == "call":
                call = self._calls.get(key)
                value = asdict(call) if call is not None else None
            elif kind == "block":
                blk = self._blocks.get(key)
                value = asdict(blk) if blk is not None else None
            else:
                value = self._overrides.get(key)
            if value is None:
                gone.append((kind, key))
            else:
                rows.append((kind, key, dumps(value), self._wall_expiry.get(key)))
        self._dirty.clear()
        db = self._db
        db.execute("BEGIN")
        try:
            if rows:
                db.executemany(
                    "INSERT INTO kv (kind, key, value, wall_expires) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value,"
                    " wall_expires = excluded.wall_expires",
                    rows,
                )
            if gone:
                db.executemany("DELETE FROM kv WHERE kind = ? AND key = ?", gone)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _touch(self, kind: str, key: str, ttl_s: float | None = None) -> None:
        if ttl_s is not None:
            self._wall_expiry[key] = time.time() + ttl_s
        self._dirty.add((kind, key))

    def _prune(self) -> None:
        self._ops += 1
        if self._ops % 5000:
            return
        now = time.time()
        for key in [k for k, t in self._wall_expiry.items() if t < now]:
            del self._wall_expiry[key]
            self._counts.pop(key, None)
            self._spends.pop(key, None)
            call = self._calls.get(key)
            if call is not None and call.state in ("ended", "expired"):
                del self._calls[key]
        if self._db is not None:
            self._db.execute(
                "DELETE FROM kv WHERE wall_expires IS NOT NULL AND wall_expires < ?", (now,)
            )

    # -- calls ---------------------------------------------------------------
    def _settle(self, call: CallState, cost_e4: int, state: str) -> None:
        for key in call.meta.get("spends", "").split("\n"):
            if key:
                pair = self._spends.setdefault(key, [0, 0])
                pair[0] += cost_e4
                pair[1] -= call.reserved_e4
                self._touch("spend", key)
        live = self._live.get(call.account)
        if live is not None:
            live.pop(call.call_id, None)
            if not live:
                del self._live[call.account]
        call.state = state
        call.cost_e4 = cost_e4
        self._touch("call", call.call_id, TOMBSTONE_S)

    def _set_live(self, account: str, call_id: str, expires: float) -> None:
        self._live.setdefault(account, {})[call_id] = expires
        heapq.heappush(self._expiry_heap.setdefault(account, []), (expires, call_id))

    def _expire_account(self, account: str, now: float, limit: int | None) -> int:
        live = self._live.get(account)
        heap = self._expiry_heap.get(account)
        if not live or not heap:
            if not live:
                self._expiry_heap.pop(account, None)
            return 0
        expired = 0
        while heap and heap[0][0] <= now and (limit is None or expired < limit):
            exp, cid = heapq.heappop(heap)
            if live.get(cid) != exp:  # ended, or answered with a new expiry
                continue
            call = self._calls[cid]
            self._settle(call, call.reserved_e4 if call.state == "answered" else 0, "expired")
            expired += 1
            if not live:
                break
        if len(heap) > 4 * len(live) + 64:  # drop entries of calls long gone
            self._expiry_heap[account] = [(e, c) for e, c in heap if live.get(c) == e]
            heapq.heapify(self._expiry_heap[account])
        return expired

    def reserve(self, req: ReserveRequest) -> ReserveResult:
        with self._lock:
            old = self._calls.get(req.call_id)
            if old is not None:
                return ReserveResult(
                    ok=True,
                    reason=old.meta.get("reason", ""),
                    reserved_e4=old.reserved_e4,
                    duplicate=True,
                    meta=old.meta,
                )
            self._expire_account(req.account, req.now, EXPIRE_BATCH)
            fail = ""
            fval = flim = 0
            if req.account in self._blocks:
                fail = "account_blocked"
            live = self._live.get(req.account, {})
            if not fail and req.max_concurrent != NO_LIMIT and len(live) + 1 > req.max_concurrent:
                fail, fval, flim = "concurrent_calls", len(live), req.max_concurrent
            if not fail:
                for c in req.counts:
                    if c.limit != NO_LIMIT:
                        v = self._counts.get(c.key, 0)
                        if v + 1 > c.limit:
                            fail, fval, flim = c.reason, v, c.limit
                            break
            remaining: int | None = None
            rreason = ""
            rlim = 0
            for c in req.spends:
                if c.limit != NO_LIMIT:
                    s, r = self._spends.get(c.key, (0, 0))
                    left = c.limit - s - r
                    if remaining is None or left < remaining:
                        remaining, rreason, rlim = left, c.reason, c.limit
            res = req.want_e4
            if remaining is not None:
                if remaining < req.min_e4 and not fail:
                    fail, fval, flim = rreason, rlim - remaining, rlim
                res = min(res, remaining)
            if fail and req.force:
                res = req.want_e4
            res = max(res, 0)
            if fail and not req.force:
                return ReserveResult(
                    ok=False, reason=fail, value=fval, limit=flim, remaining_e4=remaining
                )
            for c in req.counts:
                self._counts[c.key] = self._counts.get(c.key, 0) + 1
                self._touch("count", c.key, c.ttl_s)
            for c in req.spends:
                pair = self._spends.setdefault(c.key, [0, 0])
                pair[1] += res
                self._touch("spend", c.key, c.ttl_s)
            meta = dict(req.meta)
            meta["spends"] = "\n".join(c.key for c in req.spends)
            meta["reason"] = fail
            meta["forced"] = "1" if fail else "0"
            meta["hold"] = repr(req.hold_s)
            self._calls[req.call_id] = CallState(
                call_id=req.call_id,
                account=req.account,
                state="ringing",
                reserved_e4=res,
                started=req.now,
                answered=None,
                expires=req.ring_expires_at,
                meta=meta,
            )
            self._set_live(req.account, req.call_id, req.ring_expires_at)
            self._touch("call", req.call_id)
            self._prune()
            self._flush()
            return ReserveResult(
                ok=True,
                reason=fail,
                value=fval,
                limit=flim,
                reserved_e4=res,
                remaining_e4=remaining,
                meta=meta,
            )

    async def reserve_async(self, req: ReserveRequest) -> ReserveResult:
        return self.reserve(req)  # memory only (SQLite: a local WAL write), no waiting

    def get_call(self, call_id: str) -> CallState | None:
        with self._lock:
            call = self._calls.get(call_id)
            return None if call is None else CallState(**asdict(call))

    def answer(self, call_id: str, now: float, expires_at: float) -> CallState | None:
        with self._lock:
            call = self._calls.get(call_id)
            if call is None:
                return None
            if call.state == "ringing":
                call.state = "answered"
                call.answered = now
                call.expires = expires_at
                self._set_live(call.account, call_id, call.expires)
                self._touch("call", call_id)
                self._flush()
            return CallState(**asdict(call))

    def end(self, call_id: str, cost_e4: int, now: float) -> EndResult:
        with self._lock:
            call = self._calls.get(call_id)
            if call is None:
                return EndResult("unknown")
            if call.state in ("ended", "expired"):
                return EndResult("already_ended", CallState(**asdict(call)))
            self._settle(call, cost_e4, "ended")
            self._flush()
            return EndResult("ended", CallState(**asdict(call)))

    def expire(self, now: float, account: str | None = None) -> int:
        with self._lock:
            accounts = [account] if account is not None else list(self._live)
            n = sum(self._expire_account(a, now, None) for a in accounts)
            self._flush()
            return n

    # the event-loop variants: memory (SQLite: a local WAL write) never waits on a network
    async def get_call_async(self, call_id: str) -> CallState | None:
        return self.get_call(call_id)

    async def answer_async(self, call_id: str, now: float, expires_at: float) -> CallState | None:
        return self.answer(call_id, now, expires_at)

    async def end_async(self, call_id: str, cost_e4: int, now: float) -> EndResult:
        return self.end(call_id, cost_e4, now)

    async def expire_async(self, now: float, account: str | None = None) -> int:
        return self.expire(now, account)

    async def get_override_async(self, account: str) -> dict[str, Any] | None:
        return self.get_override(account)

    # -- reads and admin --------------------------------------------------------
    def read_counts(self, keys: list[str]) -> list[int]:
        with self._lock:
            return [self._counts.get(k, 0) for k in keys]

    def read_spends(self, keys: list[str]) -> list[tuple[int, int]]:
        with self._lock:
            out: list[tuple[int, int]] = []
            for k in keys:
                s, r = self._spends.get(k, (0, 0))
                out.append((s, r))
            return out

    def concurrent(self, account: str) -> int:
        with self._lock:
            return len(self._live.get(account, {}))

    def reset(self, key: str) -> None:
        with self._lock:
            if key in self._counts:
                self._counts[key] = 0
                self._touch("count", key)
            if key in self._spends:
                self._spends[key][0] = 0  # live reservations stay held
                self._touch("spend", key)
            self._flush()

    def release_live_calls(self, account: str) -> int:
        with self._lock:
            live = list(self._live.get(account, {}))
            for cid in live:
                self._settle(self._calls[cid], 0, "expired")
            self._flush()
            return len(live)

    def block(self, account: str, state: BlockState) -> None:
        with self._lock:
            self._blocks[account] = state
            self._touch("block", account)
            self._flush()

    def unblock(self, account: str) -> bool:
        with self._lock:
            found = self._blocks.pop(account, None) is not None
            self._touch("block", account)
            self._flush()
            return found

    def get_block(self, account: str) -> BlockState | None:
        with self._lock:
            return self._blocks.get(account)

    def get_override(self, account: str) -> dict[str, Any] | None:
        with self._lock:
            value = self._overrides.get(account)
            return None if value is None else dict(value)

    def set_override(self, account: str, value: dict[str, Any] | None) -> None:
        with self._lock:
            if value is None:
                self._overrides.pop(account, None)
            else:
                self._overrides[account] = dict(value)
            self._touch("pol", account)
            self._flush()

    def append_audit(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._audit.append(entry)
            if self._db is not None:
                self._db.execute("INSERT INTO audit (entry) VALUES (?)", (dumps(entry),))

    def audit(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            return list(reversed(self._audit[-limit:])) if limit > 0 else []

    async def shutdown(self) -> None:
        """Nothing is held for other servers: every change is written as it happens."""

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
