"""Quota leasing: Redis state that decides most calls without a round trip.

Online charging grants quota to the node that serves a session, and the node spends it
locally. Here each `serve` process takes a *lease* on an account's counters for the
place a call goes (its minute, day, country and number type): up to ``calls`` calls and
that many reservations' worth of money, at most 1/``share`` of what is left under each
limit. The lease is a reservation in Redis like a call's, so the limits hold across
servers exactly as without leases: what one server holds, no other can spend.

While it has a lease, a server answers authorize from memory and writes the call record
to Redis behind the answer (many calls in one script run), so answer and end can reach
any server. Without a usable lease (none can be granted near a limit, the account is
blocked, report-only, has a concurrent-calls limit, or the request's time is not now)
the decision takes the exact path: one atomic script per call.

A lease is used for at most ``lifetime_s`` and then given back (what is unused returns
to the counters). A block, unblock, policy change or counter reset on any server is
published on ``tg:lease-inval:<db>``; every server drops that account's leases at once, and
uses no lease while it is not subscribed. A server that dies leaves its leases to the
expiry sweep, which gives them back after ``LEASE_TTL_S`` (event time).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis
import redis.asyncio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tollguard.limits.periods import account_tag
from tollguard.limits.redis_pipe import Reply, encode_bulks
from tollguard.limits.redis_state import LUA_SHARED, RedisState
from tollguard.limits.state import (
    BlockState,
    CallState,
    EndResult,
    ReserveRequest,
    ReserveResult,
)

log = logging.getLogger(__name__)

CHANNEL = "tg:lease-inval"  # + ":<db>": pub/sub is server-wide, the state is per database
LEASE_TTL_S = 60  # a lease its server stopped renewing is given back after this (event time)
LIVE_SKEW_S = 5.0  # requests with an explicit time further from now take the exact path
NO_LEASE_BACKOFF_S = 1.0  # after a refused lease, the exact path for this long
UNKNOWN_CALL_RETRIES_S = (0.01, 0.02, 0.04, 0.08)  # another server's record on its way
RECENT_CALLS = 50_000  # call ids answered here, remembered for switch retries
CARVE_DELAY_S = 0.002  # the call records of this long are written in one script run
CARVE_RETRIES_S = (0.05, 0.2, 1.0)  # pauses before writing records again after a failure

# KEYS: blk, leases, lease, counts..., spends...
# ARGV: now, want, calls, share, expires_at, acct, lid, nc, ns, counts (newline-joined),
#       spends (newline-joined), max_concurrent, (limit, ttl) per check, the channel.
# With a concurrent-calls limit the lease also holds one slot per call in the live set
# (members ``~<lid>#<i>``), which its calls take over one by one.
# Returns {0} (no lease: blocked, or too little left) or {1, calls, limited, remaining}.
# Near a limit the leases held elsewhere are called back (published on the channel, the
# last argument).
_GRANT = (
    LUA_SHARED
    + r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local now = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local k = tonumber(ARGV[3])
local share = tonumber(ARGV[4])
local acct = ARGV[6]
local nc = tonumber(ARGV[8])
local ns = tonumber(ARGV[9])
local live = 'tg:{' .. acct .. '}:live'
local max_conc = tonumber(ARGV[12])
expire_account(live, now, 20)
expire_leases(acct, now)
if max_conc >= 0 then  -- concurrent calls: the lease holds slots in the live set
  local m = math.floor((max_conc - redis.call('ZCARD', live)) / share)
  if m < k then k = m end
end
for i = 1, nc do
  local lim = tonumber(ARGV[11 + 2 * i])
  if lim >= 0 then
    local m = math.floor((lim - tonumber(redis.call('GET', KEYS[3 + i]) or '0')) / share)
    if m < k then k = m end
  end
end
local limited = 0
local remaining = 0
for j = 1, ns do
  local lim = tonumber(ARGV[11 + 2 * (nc + j)])
  if lim >= 0 then
    local h = redis.call('HMGET', KEYS[3 + nc + j], 's', 'r')
    local left = lim - tonumber(h[1] or '0') - tonumber(h[2] or '0')
    if limited == 0 or left < remaining then limited = 1; remaining = left end
    if want > 0 then
      local m = math.floor(left / share / want)
      if m < k then k = m end
    end
  end
end
if k < 2 then
  -- too little left to lease: the leases other servers hold must come back, so the
  -- exact path sees all that is left
  if redis.call('ZCARD', KEYS[2]) > 0 then redis.call('PUBLISH', ARGV[#ARGV], acct) end
  return {0}
end
local res = k * want
local leased = 'tg:{' .. acct .. '}:leased'
for i = 1, nc do
  local key = KEYS[3 + i]
  if redis.call('INCRBY', key, k) == k then
    redis.call('EXPIRE', key, tonumber(ARGV[12 + 2 * i]))
  end
  redis.call('HINCRBY', leased, key, k)
end
if res ~= 0 then
  for j = 1, ns do
    local key = KEYS[3 + nc + j]
    redis.call('HINCRBY', key, 'r', res)
    if redis.call('TTL', key) == -1 then
      redis.call('EXPIRE', key, tonumber(ARGV[12 + 2 * (nc + j)]))
    end
    redis.call('HINCRBY', leased, key, res)
  end
end
redis.call('EXPIRE', leased, 172800)
if max_conc >= 0 then
  for i = 1, k do redis.call('ZADD', live, tonumber(ARGV[5]), '~' .. ARGV[7] .. '#' .. i) end
  redis.call('HINCRBY', leased, '~slots', k)
end
redis.call('HSET', KEYS[3], 'acct', acct, 'res', res, 'cnt', k, 'counts', ARGV[10],
  'spends', ARGV[11], 'slots', max_conc >= 0 and 1 or 0)
redis.call('ZADD', KEYS[2], tonumber(ARGV[5]), ARGV[7])
redis.call('SADD', 'tg:accounts-live', acct)
return {1, k, limited, remaining}
"""
)

# ARGV: lid
_RETURN = LUA_SHARED + "\nreturn return_lease(ARGV[1])\n"

# ARGV: per call (lid, call id, acct, reservation, expires_at, now, meta, spends, counts).
# Records each call as the exact path would and moves its share out of the lease (summed
# per lease, so a batch costs three commands per call). A call id already recorded (a
# retry that reached another server) is skipped: its index is returned, and the lease
# keeps the share. A lease already gone (its server stalled past LEASE_TTL_S) cannot
# pay: its calls are then counted on their own.
_CARVE = r"""
local dups = {}
local by_lease = {}
local order = {}
for b = 0, #ARGV - 9, 9 do
  local lid, cid, acct = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local ck = 'tg:call:' .. cid
  if redis.call('EXISTS', ck) == 1 then
    -- recorded before: by another server (a retry of the switch: a duplicate), or by this
    -- very batch sent again after its reply was lost (nothing to do)
    if redis.call('HGET', ck, 'lease') ~= lid then table.insert(dups, b / 9) end
  else
    local l = by_lease[lid]
    if not l then
      l = {acct = acct, n = 0, res = 0, spends = ARGV[b + 8], counts = ARGV[b + 9]}
      by_lease[lid] = l
      table.insert(order, lid)
    end
    l.n = l.n + 1
    l.res = l.res + tonumber(ARGV[b + 4])
    redis.call('HSET', ck, 'acct', acct, 'res', ARGV[b + 4], 'spends', ARGV[b + 8],
      'state', 'ringing', 'started', ARGV[b + 6], 'expires', ARGV[b + 5], 'meta', ARGV[b + 7],
      'lease', lid)
    redis.call('ZADD', 'tg:{' .. acct .. '}:live', tonumber(ARGV[b + 5]), cid)
  end
end
for _, lid in ipairs(order) do
  local l = by_lease[lid]
  local lk = 'tg:lease:' .. lid
  local leased = 'tg:{' .. l.acct .. '}:leased'
  local paid = redis.call('EXISTS', lk) == 1
  if paid then
    local left = redis.call('HINCRBY', lk, 'cnt', 0 - l.n)
    if l.res ~= 0 then redis.call('HINCRBY', lk, 'res', 0 - l.res) end
    if redis.call('HGET', lk, 'slots') == '1' then  -- the calls take over the lease's slots
      local live = 'tg:{' .. l.acct .. '}:live'
      for i = left + 1, left + l.n do redis.call('ZREM', live, '~' .. lid .. '#' .. i) end
      if redis.call('HINCRBY', leased, '~slots', 0 - l.n) <= 0 then
        redis.call('HDEL', leased, '~slots')
      end
    end
  end
  for key in string.gmatch(l.counts, '[^\n]+') do
    if paid then
      if redis.call('HINCRBY', leased, key, 0 - l.n) <= 0 then redis.call('HDEL', leased, key) end
    elseif redis.call('INCRBY', key, l.n) == l.n then
      redis.call('EXPIRE', key, 2764800)
    end
  end
  if l.res ~= 0 then
    for key in string.gmatch(l.spends, '[^\n]+') do
      if paid then
        if redis.call('HINCRBY', leased, key, 0 - l.res) <= 0 then
          redis.call('HDEL', leased, key)
        end
      else
        redis.call('HINCRBY', key, 'r', l.res)
        if redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, 2764800) end
      end
    end
  end
  redis.call('SADD', 'tg:accounts-live', l.acct)
end
return dups
"""


@dataclass(frozen=True, slots=True)
class _Script:
    sha: bytes
    body: bytes


@dataclass(slots=True)
class _Lease:
    lid: str
    account: str
    gen: int  # the account's invalidation generation when it was asked for
    epoch: int  # the subscription's generation when it was asked for
    deadline: float  # monotonic: used no later than this
    calls_left: int
    calls_granted: int
    spend_left_e4: int
    limited: bool
    remaining_e4: int  # least budget left under the limits when granted (before the lease)
    used_e4: int  # reserved from it so far
    spends: bytes  # the lease's spend keys, newline-joined (as the calls store them)
    counts: bytes


_Ident = tuple[Any, ...]
_T = TypeVar("_T")


class LeasingRedisState(RedisState):
    """``RedisState`` whose authorize spends quota leases (see the module docstring)."""

    def __init__(self, url: str, calls: int = 100, share: int = 8, lifetime_s: float = 5.0) -> None:
        super().__init__(url)
        self.calls = calls
        self.share = share
        self.lifetime_s = lifetime_s
        self.server = uuid.uuid4().hex[:12]
        self.channel = f"{CHANNEL}:{self._pipe.params.get('db', 0)}"
        self._seq = itertools.count(1)
        self._scripts = {
            name: _Script(self.r.register_script(body).sha.encode(), body.encode())
            for name, body in (("grant", _GRANT), ("return", _RETURN), ("carve", _CARVE))
        }
        self._return_sync = self.r.register_script(_RETURN)
        self.load_scripts()
        self._leases: dict[_Ident, _Lease] = {}
        self._next: dict[_Ident, _Lease] = {}  # asked for before the current one runs out
        self._refilling: dict[_Ident, asyncio.Future[None]] = {}  # next leases asked for
        self._refused: dict[_Ident, float] = {}  # ident -> monotonic time to ask again
        self._quiet: dict[_Ident, float] = {}  # ident -> last exact decision without a lease
        self._granting: dict[_Ident, asyncio.Future[bool]] = {}
        self._idents: dict[int, tuple[object, object, _Ident]] = {}
        self._gen: dict[str, int] = {}
        self._epoch = 0
        self._listening = False
        self._recent: dict[str, ReserveResult] = {}
        self._carves: list[bytes] = []  # encoded entries waiting for this loop iteration
        self._carve_calls: list[tuple[str, _Lease, int]] = []
        self._carving: dict[str, asyncio.Future[Any]] = {}  # call id -> its batch's reply
        self._queued: set[asyncio.Future[Any]] = set()  # batches on the connection, in order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.granted = 0  # leases granted (for metrics and tests)
        self.leased_decisions = 0  # calls answered from a lease
        self.exact_decisions = 0  # calls answered by one script run (no usable lease)
        self.carve_failures = 0  # calls allowed from a lease whose record was not written

    def load_scripts(self) -> None:
        """Load the lease scripts now: a ``NOSCRIPT`` resend would go out behind commands
        sent later, and the order of records and lease returns matters."""
        for script in self._scripts.values():
            self.r.script_load(script.body)

    # -- authorize -------------------------------------------------------------------
    async def reserve_async(self, req: ReserveRequest) -> ReserveResult:
        if req.force or abs(req.now - time.time()) > LIVE_SKEW_S:
            return await super().reserve_async(req)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._start(loop)
        seen = self._recent.get(req.call_id)
        if seen is not None:
            return seen
        if not self._listening:
            return await self._exact(req)
        ident = self._ident(req)
        for _ in range(3):
            lease = self._leases.get(ident)
            if lease is not None and self._usable(lease, req.want_e4):
                return self._spend(ident, lease, req)
            following = self._next.pop(ident, None)
            if following is not None and self._usable(following, req.want_e4):
                if lease is not None:
                    # asked for while this one held all its share; what it did not use
                    # goes back now, so the budget left is that much larger
                    following.remaining_e4 += lease.spend_left_e4
                    self._give_back(lease)
                self._leases[ident] = following
                return self._spend(ident, following, req)
            if following is not None:
                self._give_back(following)
            asking = self._refilling.get(ident)
            if asking is not None:  # the next lease is on its way: wait for it
                await asyncio.wait([asking])
                continue
            now = time.monotonic()
            if self._refused.get(ident, 0.0) > now:
                break
            # a lease pays off from the second call to a place within its lifetime; a
            # quiet account's single call costs one script run, not three
            quiet = self._quiet.get(ident, -1e9) < now - self.lifetime_s
            if lease is None and ident not in self._granting and quiet:
                self._quiet[ident] = now
                break
            if not await self._acquire(ident, req):
                break
        return await self._exact(req)

    async def _exact(self, req: ReserveRequest) -> ReserveResult:
        """One script run for this call; an allowed call id is remembered like a leased
        one, so a retry here is answered as a duplicate without Redis."""
        res = await super().reserve_async(req)
        self.exact_decisions += 1
        if res.ok and not res.duplicate:
            self._remember(req.call_id, res.reserved_e4, res.meta)
        return res

    def _usable(self, lease: _Lease, want: int) -> bool:
        return (
            lease.calls_left > 0
            and lease.spend_left_e4 >= want
            and lease.gen == self._gen.get(lease.account, 0)
            and lease.epoch == self._epoch
            and time.monotonic() < lease.deadline
        )

    def _spend(self, ident: _Ident, lease: _Lease, req: ReserveRequest) -> ReserveResult:
        want = req.want_e4
        remaining = lease.remaining_e4 - lease.used_e4 if lease.limited else None
        lease.calls_left -= 1
        self.leased_decisions += 1
        if lease.calls_left == lease.calls_granted // 4 and ident not in self._refilling:
            self._refill(ident, req)
        lease.spend_left_e4 -= want
        lease.used_e4 += want
        stored = orjson.dumps(req.meta)
        meta = dict(req.meta)
        meta["reason"] = ""
        meta["forced"] = "0"
        self._carves += (
            lease.lid.encode(),
            req.call_id.encode(),
            req.account.encode(),
            str(want).encode(),
            repr(req.ring_expires_at).encode(),
            repr(req.now).encode(),
            stored,
            lease.spends,
            lease.counts,
        )
        self._carve_calls.append((req.call_id, lease, want))
        if len(self._carve_calls) == 1:  # records wait a little, to share a script run
            asyncio.get_running_loop().call_later(CARVE_DELAY_S, self._flush_carves)
        self._remember(req.call_id, want, meta)
        return ReserveResult(ok=True, remaining_e4=remaining, reserved_e4=want, meta=meta)

    def _refill(self, ident: _Ident, req: ReserveRequest) -> None:
        """Ask for the next lease while a quarter of this one is left, so decisions do
        not wait for a grant when it runs out."""

        async def ask() -> None:
            try:
                lease = await self._grant(req)
            except Exception as exc:  # the current lease goes on; running out asks again
                log.warning("could not ask for the next quota lease: %s", exc)
                return
            finally:
                self._refilling.pop(ident, None)
            if lease is not None:
                old = self._next.pop(ident, None)
                if old is not None:
                    self._give_back(old)
                self._next[ident] = lease

        self._refilling[ident] = asyncio.ensure_future(ask())  # held till done

    def _remember(self, call_id: str, reserved_e4: int, meta: dict[str, str]) -> None:
        if len(self._recent) >= RECENT_CALLS:
            del self._recent[next(iter(self._recent))]
        self._recent[call_id] = ReserveResult(
            ok=True, reserved_e4=reserved_e4, duplicate=True, meta=meta
        )

    def _ident(self, req: ReserveRequest) -> _Ident:
        """What a lease covers: the account and the counters (with their limits) of the
        call. The service builds the check lists once per plan, minute and place, so the
        identity is memoized on those lists (kept referenced, so ids are not reused)."""
        hit = self._idents.get(id(req.counts))
        if hit is not None and hit[0] is req.counts and hit[1] is req.spends:
            return hit[2]
        ident = (
            req.account,
            tuple((c.key, c.limit) for c in req.counts),
            tuple((c.key, c.limit) for c in req.spends),
        )
        if len(self._idents) > 10_000:
            self._idents.clear()
        self._idents[id(req.counts)] = (req.counts, req.spends, ident)
        return ident

    async def _acquire(self, ident: _Ident, req: ReserveRequest) -> bool:
        """A fresh lease for ``ident`` (one request asks; the others wait for it)."""
        waiting = self._granting.get(ident)
        if waiting is not None:
            return await asyncio.shield(waiting)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._granting[ident] = fut
        try:
            old = self._leases.pop(ident, None)
            if old is not None:
                self._give_back(old)
            lease = await self._grant(req)
            if lease is None:
                self._refused[ident] = time.monotonic() + NO_LEASE_BACKOFF_S
                # near a limit: this server's other leases on the account go back before
                # the exact path runs (same connection, so Redis sees them first)
                self._give_back_where(lambda held: held.account == req.account)
            else:
                self._leases[ident] = lease
            fut.set_result(lease is not None)
            return lease is not None
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: the waiters raise it themselves
            raise
        finally:
            del self._granting[ident]

    async def _grant(self, req: ReserveRequest) -> _Lease | None:
        tag = account_tag(req.account)
        lid = f"{self.server}:{next(self._seq)}"
        gen, epoch = self._gen.get(req.account, 0), self._epoch
        checks = (*req.counts, *req.spends)
        counts = "\n".join(c.key for c in req.counts).encode()
        spends = "\n".join(c.key for c in req.spends).encode()
        keys = [f"{tag}:blk", f"{tag}:leases", f"tg:lease:{lid}", *(c.key for c in checks)]
        args = [
            repr(req.now),
            str(req.want_e4),
            str(self.calls),
            str(self.share),
            repr(req.now + LEASE_TTL_S),
            req.account,
            lid,
            str(len(req.counts)),
            str(len(req.spends)),
        ]
        items = [str(len(keys)).encode(), *(k.encode() for k in keys), *(a.encode() for a in args)]
        items += (counts, spends, str(req.max_concurrent).encode())
        for c in checks:
            items += (str(c.limit).encode(), str(c.ttl_s).encode())
        items.append(self.channel.encode())
        out = await self._submit("grant", len(items), encode_bulks(items))
        if not isinstance(out, list) or int(out[0]) == 0:
            return None
        self.granted += 1
        calls = int(out[1])
        return _Lease(
            lid=lid,
            account=req.account,
            gen=gen,
            epoch=epoch,
            deadline=time.monotonic() + self.lifetime_s,
            calls_left=calls,
            calls_granted=calls,
            spend_left_e4=calls * req.want_e4,
            limited=bool(int(out[2])),
            remaining_e4=int(out[3]),
            used_e4=0,
            spends=spends,
            counts=counts,
        )

    # -- talking to Redis in order -------------------------------------------------------
    def _submit(self, name: str, n: int, body: bytes) -> asyncio.Future[Reply]:
        """Queue a script behind everything sent before it (calls spent from a lease must
        reach Redis before the lease goes back), and its reply as a future."""
        self._flush_carves()
        script = self._scripts[name]
        sent = self._pipe.evalsha_now(script.sha, n, body)
        return asyncio.ensure_future(
            self._pipe.evalsha_encoded(script.sha, script.body, n, body, sent=sent)
        )

    def _flush_carves(self) -> None:
        if not self._carve_calls:
            return
        entries, calls = self._carves, self._carve_calls
        self._carves, self._carve_calls = [], []
        self._send_carves(calls, len(entries) + 1, encode_bulks([b"0", *entries]), attempt=0)

    def _send_carves(
        self, calls: list[tuple[str, _Lease, int]], n: int, body: bytes, attempt: int
    ) -> None:
        """One script run records the calls. The reply's future comes straight from the
        connection (no task per batch). Sent again (``attempt`` > 0) through the async
        path, which connects first, after a pause: the connection dropped, Redis timed
        out, or Redis forgot the script."""
        script = self._scripts["carve"]
        sent = None if attempt else self._pipe.evalsha_now(script.sha, n, body)
        fut: asyncio.Future[Reply] = (
            sent
            if sent is not None
            else asyncio.ensure_future(self._resend(script, n, body, attempt))
        )
        for call_id, _, _ in calls:
            self._carving[call_id] = fut
        if sent is not None:
            self._queued.add(fut)
        fut.add_done_callback(lambda f: self._carved(f, calls, n, body, attempt))

    async def _resend(self, script: _Script, n: int, body: bytes, attempt: int) -> Reply:
        if attempt:
            await asyncio.sleep(CARVE_RETRIES_S[attempt - 1])
        return await self._pipe.evalsha_encoded(script.sha, script.body, n, body)

    def _carved(
        self,
        fut: asyncio.Future[Reply],
        calls: list[tuple[str, _Lease, int]],
        n: int,
        body: bytes,
        attempt: int,
    ) -> None:
        self._queued.discard(fut)
        for call_id, _, _ in calls:
            if self._carving.get(call_id) is fut:
                del self._carving[call_id]
        error = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if error is None and isinstance(fut.result(), redis.ResponseError):
            error = fut.result()
        if error is not None:
            retryable = isinstance(error, redis.ConnectionError | redis.TimeoutError) or (
                str(error).startswith("NOSCRIPT")
            )
            if retryable and attempt < len(CARVE_RETRIES_S):
                log.warning("recording %d leased calls again: %s", len(calls), error)
                self._send_carves(calls, n, body, attempt + 1)
                return
            # The calls were allowed; their records could not be written. Counters keep
            # their share in the lease, which goes back when it expires.
            self.carve_failures += len(calls)
            log.error("could not record %d calls allowed from quota leases: %s", len(calls), error)
            return
        for index in fut.result() or []:  # retries that reached another server first
            call_id, lease, want = calls[int(index)]
            lease.calls_left += 1
            lease.spend_left_e4 += want
            lease.used_e4 -= want

    def _give_back_where(self, which: Callable[[_Lease], bool]) -> None:
        """Give back the leases held here (current and next) that ``which`` picks, except
        for places whose lease is being asked for right now."""
        for held_by in (self._leases, self._next):
            for ident, lease in list(held_by.items()):
                if ident not in self._granting and which(lease):
                    del held_by[ident]
                    self._give_back(lease)

    def _give_back(self, lease: _Lease) -> None:
        fut = self._submit("return", 2, encode_bulks([b"0", lease.lid.encode()]))
        fut.add_done_callback(_log_failure)

    async def drain(self) -> None:
        """Wait until every call answered from a lease is recorded in Redis."""
        self._flush_carves()
        pending = set(self._carving.values())
        if pending:
            await asyncio.wait(pending)

    # -- background: invalidations and lease expiry --------------------------------------
    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._listening = False
        self._carving.clear()
        self._queued.clear()
        self._granting.clear()
        self._refilling.clear()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._janitor())]

    async def _listen(self) -> None:
        """Follow invalidations; leases are used only while subscribed."""
        while True:
            client = redis.asyncio.Redis.from_url(
                self.url, socket_connect_timeout=2.0, client_name=f"tollguard-leases-{self.server}"
            )
            try:
                async with client.pubsub() as ps:
                    await ps.subscribe(self.channel)
                    async for msg in ps.listen():
                        if msg["type"] == "subscribe":
                            self._epoch += 1  # whatever was missed before: start over
                            for script in self._scripts.values():  # Redis may have restarted
                                await client.script_load(script.body)
                            self._listening = True
                        elif msg["type"] == "message":
                            self.invalidate(_text(msg["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease invalidations not received (%s); exact path meanwhile", exc)
            finally:
                self._listening = False
                self._epoch += 1
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(0.5)

    async def _janitor(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.lifetime_s / 2))
            try:
                self._tidy(time.monotonic())
            except Exception:  # keep going: the next round gives back what this one could not
                log.exception("quota lease upkeep failed")

    def _tidy(self, now: float) -> None:
        """Give back leases that are used up, stale or past their time; forget old marks."""
        self._give_back_where(lambda held: not self._usable(held, 0))
        for ident, until in list(self._refused.items()):
            if until <= now:
                del self._refused[ident]
        for ident, at in list(self._quiet.items()):
            if at < now - self.lifetime_s:
                del self._quiet[ident]

    def invalidate(self, account: str) -> None:
        """Drop the account's leases here (safe from any thread: one dict write)."""
        self._gen[account] = self._gen.get(account, 0) + 1

    def _changed(self, account: str) -> None:
        self.invalidate(account)
        self.r.publish(self.channel, account)

    # -- the lifecycle finds a call's record -----------------------------------------
    # A call answered from a lease here: its record is queued on the connection before
    # the lifecycle's command, and Redis runs them in that order, so nothing is awaited
    # (unless the record is being sent again, off that order). One answered by another
    # server may still be on its way: an unknown call is looked up again a few times
    # (for 150 ms in all) before it is called unknown.
    async def _recorded(self, call_id: str) -> None:
        if call_id in self._carving or any(c == call_id for c, _, _ in self._carve_calls):
            self._flush_carves()
            batch = self._carving.get(call_id)
            if batch is not None and batch not in self._queued:
                await asyncio.wait([batch])

    async def _until_known(
        self, call_id: str, ask: Callable[[], Awaitable[_T]], known: Callable[[_T], bool]
    ) -> _T:
        await self._recorded(call_id)
        for delay in UNKNOWN_CALL_RETRIES_S:
            out = await ask()
            if known(out):
                return out
            await asyncio.sleep(delay)
        return await ask()

    async def get_call_async(self, call_id: str) -> CallState | None:
        return await self._until_known(
            call_id, lambda: RedisState.get_call_async(self, call_id), _is_not_none
        )

    async def answer_async(self, call_id: str, now: float, expires_at: float) -> CallState | None:
        return await self._until_known(
            call_id, lambda: RedisState.answer_async(self, call_id, now, expires_at), _is_not_none
        )

    async def end_async(self, call_id: str, cost_e4: int, now: float) -> EndResult:
        return await self._until_known(
            call_id, lambda: RedisState.end_async(self, call_id, cost_e4, now), _is_known_end
        )

    # -- changes that invalidate leases everywhere ---------------------------------------
    def block(self, account: str, state: BlockState) -> None:
        super().block(account, state)
        self._changed(account)

    def unblock(self, account: str) -> bool:
        done = super().unblock(account)
        self._changed(account)
        return done

    def set_override(self, account: str, value: dict[str, Any] | None) -> None:
        super().set_override(account, value)
        self._changed(account)

    def reset(self, key: str) -> None:
        # leases hold part of the counter: give them back first, then zero it
        account = _account_of(key)
        self._changed(account)
        self._return_account_sync(account)
        super().reset(key)

    def release_live_calls(self, account: str) -> int:
        n = super().release_live_calls(account)
        self._changed(account)
        return n

    def _return_account_sync(self, account: str) -> None:
        """Every lease of the account, from any server, back to the counters now."""
        lz = account_tag(account) + ":leases"
        lids: list[str] = self.r.zrange(lz, 0, -1)  # type: ignore[assignment]
        for lid in lids:
            self._return_sync(keys=[], args=[lid])

    # -- readouts leave leased quota out ----------------------------------------------
    def read_counts(self, keys: list[str]) -> list[int]:
        values = super().read_counts(keys)
        leased = self._leased(keys)
        return [max(v - d, 0) for v, d in zip(values, leased, strict=True)]

    def read_spends(self, keys: list[str]) -> list[tuple[int, int]]:
        values = super().read_spends(keys)
        leased = self._leased(keys)
        return [(s, max(r - d, 0)) for (s, r), d in zip(values, leased, strict=True)]

    def concurrent(self, account: str) -> int:
        slots = self.r.hget(account_tag(account) + ":leased", "~slots")
        return max(super().concurrent(account) - int(slots or 0), 0)  # type: ignore[arg-type]

    def _leased(self, keys: list[str]) -> list[int]:
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.hget(account_tag(_account_of(k)) + ":leased", k)
        return [int(v or 0) for v in pipe.execute()]

    async def shutdown(self) -> None:
        """Record every call answered from a lease, then give every lease back."""
        for task in self._tasks:
            task.cancel()
        await self.drain()
        leases = [*self._leases.values(), *self._next.values()]
        self._leases.clear()
        self._next.clear()
        replies = [
            self._submit("return", 2, encode_bulks([b"0", lease.lid.encode()])) for lease in leases
        ]
        if replies:
            await asyncio.wait(replies, timeout=2.0)

    def close(self) -> None:
        for lease in [*self._leases.values(), *self._next.values()]:
            with contextlib.suppress(redis.RedisError):
                self._return_sync(keys=[], args=[lease.lid])
        self._leases.clear()
        self._next.clear()
        super().close()


def _account_of(key: str) -> str:
    """The account of a key ``tg:{account}:...``."""
    return key[key.index("{") + 1 : key.index("}:")]


def _is_not_none(call: CallState | None) -> bool:
    return call is not None


def _is_known_end(out: EndResult) -> bool:
    return out.status != "unknown"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("a quota lease was not given back (the sweep will): %s", fut.exception())


class LeaseMetrics:
    """Prometheus view of a server's quota leases (registered by the API when in use)."""

    def __init__(self, state: LeasingRedisState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        for name, help_text, value in (
            ("tollguard_lease_grants", "Quota leases granted to this server", s.granted),
            ("tollguard_lease_decisions", "Authorize answers from a lease", s.leased_decisions),
            (
                "tollguard_lease_exact_decisions",
                "Authorize answers by one Redis script run (no usable lease)",
                s.exact_decisions,
            ),
            (
                "tollguard_lease_record_failures",
                "Calls allowed from a lease whose record could not be written",
                s.carve_failures,
            ),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        yield GaugeMetricFamily(
            "tollguard_leases_held", "Quota leases this server holds", value=len(s._leases)
        )
