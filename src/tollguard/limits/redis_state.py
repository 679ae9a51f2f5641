"""Redis state shared by many `tollguard serve` processes.

Every change that must be atomic is one Lua script: check-and-reserve (so two servers
cannot both reserve the last euro), answer, end (settle), expire, reset. Money is
integer ten-thousandths. Keys of one account share the hash tag ``tg:{account}``; the
scripts also touch call keys (``tg:call:<id>``) they find through the account's live
set, so a single Redis server (or a primary with replicas) is required, not a cluster.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import orjson
import redis
from redis.commands.core import Script

from tollguard.limits.periods import account_tag
from tollguard.limits.redis_pipe import PipelinedRedis, encode_bulks, parse_reply
from tollguard.limits.state import (
    BlockState,
    CallState,
    Check,
    EndResult,
    ReserveRequest,
    ReserveResult,
    dumps,
)

TOMBSTONE_S = 86400
EXPIRE_BATCH = 20  # stale calls settled per authorize (the sweep settles the rest)
EXPIRE_CHUNK = 500  # accounts per pipelined burst of the sweep
LIVE_ACCOUNTS = "tg:accounts-live"  # accounts with live calls (what the sweep visits)

LUA_SHARED = r"""
local function settle(cid, charge_all, newstate, cost)
  local ck = 'tg:call:' .. cid
  local c = redis.call('HMGET', ck, 'acct', 'res', 'spends', 'state')
  if not c[1] then return 0 end
  if c[4] == 'ended' or c[4] == 'expired' then return 0 end
  local res = tonumber(c[2])
  if cost == nil then
    if charge_all and c[4] == 'answered' then cost = res else cost = 0 end
  end
  for key in string.gmatch(c[3] or '', '[^\n]+') do
    if cost ~= 0 then redis.call('HINCRBY', key, 's', cost) end
    if res ~= 0 then redis.call('HINCRBY', key, 'r', 0 - res) end
  end
  redis.call('ZREM', 'tg:{' .. c[1] .. '}:live', cid)
  redis.call('HSET', ck, 'state', newstate, 'cost', cost)
  redis.call('EXPIRE', ck, @TOMBSTONE@)
  return 1
end
local function expire_account(live, now, batch)
  local stale
  if batch > 0 then
    stale = redis.call('ZRANGEBYSCORE', live, '-inf', now, 'LIMIT', 0, batch)
  else
    stale = redis.call('ZRANGEBYSCORE', live, '-inf', now)
  end
  local n = 0
  for _, cid in ipairs(stale) do
    n = n + settle(cid, true, 'expired', nil)
    redis.call('ZREM', live, cid)
  end
  return n
end
-- a quota lease (limits/leases.py) given back: what its server did not use leaves the
-- counters it was taken from, and the account's record of leased amounts
local function return_lease(lid)
  local lk = 'tg:lease:' .. lid
  local l = redis.call('HMGET', lk, 'acct', 'res', 'cnt', 'counts', 'spends', 'slots')
  if not l[1] then return 0 end
  local res = tonumber(l[2])
  local cnt = tonumber(l[3])
  local leased = 'tg:{' .. l[1] .. '}:leased'
  if l[6] == '1' and cnt > 0 then  -- the concurrent-call slots it still holds
    for i = 1, cnt do redis.call('ZREM', 'tg:{' .. l[1] .. '}:live', '~' .. lid .. '#' .. i) end
    if redis.call('HINCRBY', leased, '~slots', 0 - cnt) <= 0 then
      redis.call('HDEL', leased, '~slots')
    end
  end
  for key in string.gmatch(l[4] or '', '[^\n]+') do
    if cnt ~= 0 and redis.call('EXISTS', key) == 1 then
      if redis.call('DECRBY', key, cnt) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
    end
    if redis.call('HINCRBY', leased, key, 0 - cnt) <= 0 then redis.call('HDEL', leased, key) end
  end
  for key in string.gmatch(l[5] or '', '[^\n]+') do
    if res ~= 0 and redis.call('EXISTS', key) == 1 then redis.call('HINCRBY', key, 'r', 0 - res) end
    if redis.call('HINCRBY', leased, key, 0 - res) <= 0 then redis.call('HDEL', leased, key) end
  end
  redis.call('DEL', lk)
  redis.call('ZREM', 'tg:{' .. l[1] .. '}:leases', lid)
  return 1
end
local function expire_leases(acct, now)
  local lz = 'tg:{' .. acct .. '}:leases'
  for _, lid in ipairs(redis.call('ZRANGEBYSCORE', lz, '-inf', now)) do
    return_lease(lid)
    redis.call('ZREM', lz, lid)
  end
end
""".replace("@TOMBSTONE@", str(TOMBSTONE_S))

# KEYS: blk, live, call, counts..., spends...
# ARGV: now, want, min, ring_exp, force, acct, meta_json (what changes per call), then
#       max_conc, nc, ns, reasons (comma-separated, one per check), the call's spend keys
#       (newline-separated), (limit, ttl) per count, then per spend (what is the same for
#       every call of an account and minute: the caller encodes it once).
# Returns {kind, fail, value, limit, limited, remaining, reserved} with kind 0 ok, 1 deny,
# 2 duplicate; fail 0 none, -1 blocked, -2 concurrent, i > 0 the i-th check (counts, then
# spends). A duplicate returns {2, reason, reserved, meta, forced}.
# Kept small on purpose: it runs once per authorize, so every redis.call and argument
# counts (Lua's own work costs as much as the commands: one key per counter measured
# faster than one hash per period). No JSON work here (the caller sends the call's meta
# ready-made); counter TTLs are set when a counter is created (the period's end does not
# move); the account joins tg:accounts-live only when it had no live call.
_RESERVE = (
    LUA_SHARED
    + r"""
if redis.call('EXISTS', KEYS[3]) == 1 then
  local old = redis.call('HMGET', KEYS[3], 'res', 'meta', 'reason', 'forced')
  return {2, old[3], old[1], old[2], old[4]}
end
local now = tonumber(ARGV[1])
local nc = tonumber(ARGV[9])
local ns = tonumber(ARGV[10])
local max_conc = tonumber(ARGV[8])
local want = tonumber(ARGV[2])
local force = ARGV[5] == '1'
expire_account(KEYS[2], now, @BATCH@)
local fail = 0
local fval = 0
local flim = 0
if redis.call('EXISTS', KEYS[1]) == 1 then fail = -1 end
local conc = redis.call('ZCARD', KEYS[2])
if fail == 0 and max_conc >= 0 and conc + 1 > max_conc then
  fail = -2; fval = conc; flim = max_conc
end
if fail == 0 then
  for i = 1, nc do
    local lim = tonumber(ARGV[11 + 2 * i])
    if lim >= 0 then
      local v = tonumber(redis.call('GET', KEYS[3 + i]) or '0')
      if v + 1 > lim then fail = i; fval = v; flim = lim; break end
    end
  end
end
local limited = 0
local remaining = 0
local ridx = 0
local rlim = 0
local fresh = {}
for j = 1, ns do
  local k = KEYS[3 + nc + j]
  local lim = tonumber(ARGV[11 + 2 * (nc + j)])
  if lim >= 0 then  -- a counter without a limit is not read: its TTL is checked on write
    local h = redis.call('HMGET', k, 's', 'r')
    if not h[1] and not h[2] then fresh[j] = true end
    local left = lim - tonumber(h[1] or '0') - tonumber(h[2] or '0')
    if limited == 0 or left < remaining then
      limited = 1; remaining = left; ridx = nc + j; rlim = lim
    end
  end
end
local res = want
if limited == 1 then
  if remaining < tonumber(ARGV[3]) and fail == 0 then
    fail = ridx; fval = rlim - remaining; flim = rlim
  end
  if remaining < res then res = remaining end
end
if fail ~= 0 and force then res = want end
if res < 0 then res = 0 end
if fail ~= 0 and not force then
  return {1, fail, fval, flim, limited, remaining, 0}
end
for i = 1, nc do
  if redis.call('INCR', KEYS[3 + i]) == 1 then
    redis.call('EXPIRE', KEYS[3 + i], tonumber(ARGV[12 + 2 * i]))
  end
end
for j = 1, ns do
  local k = KEYS[3 + nc + j]
  local r = redis.call('HINCRBY', k, 'r', res)
  -- a counter without a limit was not read: r was 0, so it may be new (no TTL yet)
  if not fresh[j] and r == res and tonumber(ARGV[11 + 2 * (nc + j)]) < 0 then
    fresh[j] = redis.call('TTL', k) == -1
  end
  if fresh[j] then redis.call('EXPIRE', k, tonumber(ARGV[12 + 2 * (nc + j)])) end
end
redis.call('HSET', KEYS[3], 'acct', ARGV[6], 'res', res, 'spends', ARGV[12],
  'state', 'ringing', 'started', ARGV[1], 'expires', ARGV[4], 'meta', ARGV[7])
if fail ~= 0 then  -- report-only: what would have denied, kept with the call
  local reason = ''
  if fail == -1 then reason = 'account_blocked'
  elseif fail == -2 then reason = 'concurrent_calls'
  else
    local n = 0
    for name in string.gmatch(ARGV[11], '[^,]+') do
      n = n + 1
      if n == fail then reason = name end
    end
  end
  redis.call('HSET', KEYS[3], 'reason', reason, 'forced', '1')
end
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), string.sub(KEYS[3], 9))
if conc == 0 then redis.call('SADD', 'tg:accounts-live', ARGV[6]) end
return {0, fail, fval, flim, limited, remaining, res}
""".replace("@BATCH@", str(EXPIRE_BATCH))
)

# KEYS: call ; ARGV: now, expires_at. Returns the call's fields (HGETALL), {} if unknown:
# the handler needs the record anyway, so it comes back in the same round trip.
_ANSWER = r"""
local c = redis.call('HMGET', KEYS[1], 'acct', 'state')
if not c[1] then return {} end
if c[2] == 'ringing' then
  local exp = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'state', 'answered', 'answered', ARGV[1], 'expires', tostring(exp))
  redis.call('ZADD', 'tg:{' .. c[1] .. '}:live', 'XX', exp, string.sub(KEYS[1], 9))
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: call ; ARGV: cost, call_id. Returns {status, HGETALL of the call...}.
_END = (
    LUA_SHARED
    + r"""
local c = redis.call('HMGET', KEYS[1], 'acct', 'state')
if not c[1] then return {'unknown'} end
local status = 'already_ended'
if c[2] ~= 'ended' and c[2] ~= 'expired' then
  settle(ARGV[2], false, 'ended', tonumber(ARGV[1]))
  status = 'ended'
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, status)
return out
"""
)

# KEYS: live, accounts-live ; ARGV: now, account. Also gives back the quota leases of a
# server that stopped renewing them. The account leaves the set of accounts with live
# calls when none (and no lease) is left (atomically, so a call reserved meanwhile keeps it).
_EXPIRE = (
    LUA_SHARED
    + r"""
local n = expire_account(KEYS[1], tonumber(ARGV[1]), 0)
expire_leases(ARGV[2], tonumber(ARGV[1]))
if redis.call('EXISTS', KEYS[1]) == 0
    and redis.call('EXISTS', 'tg:{' .. ARGV[2] .. '}:leases') == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
end
return n
"""
)

# KEYS: live
_RELEASE = (
    LUA_SHARED
    + r"""
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, cid in ipairs(ids) do settle(cid, false, 'expired', 0) end
redis.call('DEL', KEYS[1])
return #ids
"""
)

# KEYS: key
_RESET = r"""
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'hash' then redis.call('HSET', KEYS[1], 's', 0)
elseif t == 'string' then redis.call('SET', KEYS[1], 0, 'KEEPTTL') end
return 1
"""


def _pairs(flat: Any) -> dict[str, str]:
    """A flat [field, value, ...] reply (HGETALL from a script) as a dict of str."""
    if not flat:
        return {}
    items = [_text(v) for v in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


def _call_state(call_id: str, h: Mapping[str, str]) -> CallState | None:
    if not h:
        return None
    return CallState(
        call_id=call_id,
        account=str(h["acct"]),
        state=str(h["state"]),
        reserved_e4=int(h["res"]),
        started=float(h["started"]),
        answered=float(h["answered"]) if "answered" in h else None,
        expires=float(h["expires"]),
        meta=_stored_meta(h),
        cost_e4=int(h["cost"]) if "cost" in h else None,
    )


def _end_result(call_id: str, out: Any) -> EndResult:
    status = _text(out[0])
    return EndResult(status, _call_state(call_id, _pairs(out[1:])))


def _expire_keys(account: str) -> list[str]:
    return [account_tag(account) + ":live", LIVE_ACCOUNTS]


def _stored_meta(h: Any) -> dict[str, str]:
    meta: dict[str, str] = json.loads(h.get("meta") or "{}")
    # the outcome is stored next to the meta, and only when a check failed (report-only);
    # calls from before that kept it inside the meta
    meta["reason"] = str(h.get("reason", meta.get("reason", "")))
    meta["forced"] = str(h.get("forced", meta.get("forced", "0")))
    return meta


def _call_key(call_id: str) -> str:
    return "tg:call:" + call_id


_FIXED_REASONS = {-1: "account_blocked", -2: "concurrent_calls"}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


_Layout = tuple[int, bytes, bytes]
_LAYOUTS: dict[tuple[int, tuple[Check, ...]], _Layout] = {}


def _layout(max_concurrent: int, checks: tuple[Check, ...], nc: int) -> _Layout:
    """The reserve script's parts that are the same for every call of an account and
    minute, RESP-encoded once: (how many items, the counter keys, the trailing args)."""
    key = (max_concurrent, checks)
    hit = _LAYOUTS.get(key)
    if hit is None:
        tail = [str(max_concurrent), str(nc), str(len(checks) - nc)]
        tail.append(",".join(c.reason for c in checks))
        tail.append("\n".join(c.key for c in checks[nc:]))
        for c in checks:
            tail += (str(c.limit), str(c.ttl_s))
        keys = encode_bulks([c.key.encode() for c in checks])
        hit = (len(checks) + len(tail), keys, encode_bulks([a.encode() for a in tail]))
        if len(_LAYOUTS) > 10_000:
            _LAYOUTS.clear()
        _LAYOUTS[key] = hit
    return hit


def _reserve_call(req: ReserveRequest) -> tuple[int, bytes, dict[str, str]]:
    """The reserve script's numkeys, KEYS and ARGV as RESP (how many items, the bytes),
    and the call's meta as stored (without the outcome: ``reason`` and ``forced`` are
    fields of their own)."""
    n, keys, tail = _layout(req.max_concurrent, (*req.counts, *req.spends), len(req.counts))
    tag = account_tag(req.account)
    meta = dict(req.meta)
    head = [
        str(3 + len(req.counts) + len(req.spends)).encode(),
        (tag + ":blk").encode(),
        (tag + ":live").encode(),
        _call_key(req.call_id).encode(),
    ]
    args = [
        repr(req.now).encode(),
        str(req.want_e4).encode(),
        str(req.min_e4).encode(),
        repr(req.ring_expires_at).encode(),
        b"1" if req.force else b"0",
        req.account.encode(),
        orjson.dumps(meta),
    ]
    return n + 11, encode_bulks(head) + keys + encode_bulks(args) + tail, meta


def _reserve_result(req: ReserveRequest, meta: dict[str, str], out: list[Any]) -> ReserveResult:
    kind = int(out[0])
    if kind == 2:  # the call id was seen before: its first answer
        old = json.loads(_text(out[3])) if out[3] else {}
        # the outcome's fields exist when a check failed; older calls kept it in the meta
        old["reason"] = _text(out[1]) if out[1] is not None else old.get("reason", "")
        old["forced"] = _text(out[4]) if out[4] is not None else old.get("forced", "0")
        return ReserveResult(
            ok=True,
            reason=old.get("reason", ""),
            reserved_e4=int(out[2]),
            duplicate=True,
            meta=old,
        )
    fail = int(out[1])
    reason = ""
    if fail:
        checks = (*req.counts, *req.spends)
        reason = _FIXED_REASONS[fail] if fail < 0 else checks[fail - 1].reason
    rem = int(out[5]) if int(out[4]) else None
    if kind == 1:
        return ReserveResult(
            ok=False, reason=reason, value=int(out[2]), limit=int(out[3]), remaining_e4=rem
        )
    meta["reason"] = reason
    meta["forced"] = "1" if fail else "0"
    return ReserveResult(
        ok=True,
        reason=reason,
        value=int(out[2]),
        limit=int(out[3]),
        remaining_e4=rem,
        reserved_e4=int(out[6]),
        meta=meta,
    )


class RedisState:
    def __init__(self, url: str) -> None:
        self.url = url
        self.r: redis.Redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._reserve = self.r.register_script(_RESERVE)
        self._answer = self.r.register_script(_ANSWER)
        self._end = self.r.register_script(_END)
        self._expire = self.r.register_script(_EXPIRE)
        self._release = self.r.register_script(_RELEASE)
        self._reset = self.r.register_script(_RESET)
        # authorize from the event loop: pipelined, never blocking the loop (redis_pipe)
        self._pipe = PipelinedRedis(url, timeout_s=2.0)
        self._reserve_sha = self._reserve.sha.encode()
        self._reserve_body = _RESERVE.encode()

    def ping(self) -> bool:
        return bool(self.r.ping())

    def reserve(self, req: ReserveRequest) -> ReserveResult:
        n, body, meta = _reserve_call(req)
        items: list[bytes] = parse_reply(b"*%d\r\n" % n + body, 0)[0]
        numkeys = int(items[0])
        keys, args = items[1 : 1 + numkeys], items[1 + numkeys :]
        return _reserve_result(req, meta, self._reserve(keys=keys, args=args))

    async def reserve_async(self, req: ReserveRequest) -> ReserveResult:
        n, body, meta = _reserve_call(req)
        out = await self._pipe.evalsha_encoded(self._reserve_sha, self._reserve_body, n, body)
        return _reserve_result(req, meta, out)

    def get_call(self, call_id: str) -> CallState | None:
        h: dict[str, str] = self.r.hgetall(_call_key(call_id))  # type: ignore[assignment]
        return _call_state(call_id, h)

    def answer(self, call_id: str, now: float, expires_at: float) -> CallState | None:
        out = self._answer(keys=[_call_key(call_id)], args=[repr(now), repr(expires_at)])
        return _call_state(call_id, _pairs(out))

    def end(self, call_id: str, cost_e4: int, now: float) -> EndResult:
        return _end_result(call_id, self._end(keys=[_call_key(call_id)], args=[cost_e4, call_id]))

    def expire(self, now: float, account: str | None = None) -> int:
        accounts = [account] if account is not None else self.r.smembers(LIVE_ACCOUNTS)
        n = 0
        for acct in sorted(str(a) for a in accounts):
            n += int(self._expire(keys=_expire_keys(acct), args=[repr(now), acct]))
        return n

    # -- the lifecycle from the event loop: over the pipelined connection, never blocking it
    async def _eval(self, script: Script, keys: list[str], args: list[str]) -> Any:
        return await self._pipe.evalsha(
            script.sha.encode(),
            script.script.encode() if isinstance(script.script, str) else bytes(script.script),
            [k.encode() for k in keys],
            [a.encode() for a in args],
        )

    async def get_call_async(self, call_id: str) -> CallState | None:
        flat = await self._pipe.execute([b"HGETALL", _call_key(call_id).encode()])
        return _call_state(call_id, _pairs(flat))

    async def answer_async(self, call_id: str, now: float, expires_at: float) -> CallState | None:
        out = await self._eval(self._answer, [_call_key(call_id)], [repr(now), repr(expires_at)])
        return _call_state(call_id, _pairs(out))

    async def end_async(self, call_id: str, cost_e4: int, now: float) -> EndResult:
        out = await self._eval(self._end, [_call_key(call_id)], [str(cost_e4), call_id])
        return _end_result(call_id, out)

    async def expire_async(self, now: float, account: str | None = None) -> int:
        if account is not None:
            accounts = [account]
        else:
            members = await self._pipe.execute([b"SMEMBERS", LIVE_ACCOUNTS.encode()])
            accounts = [_text(a) for a in members] if isinstance(members, list) else []
        n = 0
        at = repr(now)
        accounts.sort()
        for i in range(0, len(accounts), EXPIRE_CHUNK):  # a bounded burst per write
            chunk = accounts[i : i + EXPIRE_CHUNK]
            outs = await asyncio.gather(
                *(self._eval(self._expire, _expire_keys(a), [at, a]) for a in chunk)
            )
            n += sum(int(o) for o in outs)
        return n

    def read_counts(self, keys: list[str]) -> list[int]:
        if not keys:
            return []
        return [int(v or 0) for v in self.r.mget(keys)]

    def read_spends(self, keys: list[str]) -> list[tuple[int, int]]:
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(k, "s", "r")
        return [(int(s or 0), int(r or 0)) for s, r in pipe.execute()]

    def concurrent(self, account: str) -> int:
        return int(self.r.zcard(account_tag(account) + ":live"))

    def reset(self, key: str) -> None:
        self._reset(keys=[key])

    def release_live_calls(self, account: str) -> int:
        return int(self._release(keys=[account_tag(account) + ":live"]))

    def block(self, account: str, state: BlockState) -> None:
        self.r.hset(
            account_tag(account) + ":blk",
            mapping={"reason": state.reason, "by": state.by, "at": state.at},
        )

    def unblock(self, account: str) -> bool:
        return bool(self.r.delete(account_tag(account) + ":blk"))

    def get_block(self, account: str) -> BlockState | None:
        h = self.r.hgetall(account_tag(account) + ":blk")
        return BlockState(str(h["reason"]), str(h["by"]), str(h["at"])) if h else None

    def get_override(self, account: str) -> dict[str, Any] | None:
        raw = self.r.get(account_tag(account) + ":pol")
        return dict(json.loads(raw)) if raw else None

    async def get_override_async(self, account: str) -> dict[str, Any] | None:
        raw = await self._pipe.execute([b"GET", (account_tag(account) + ":pol").encode()])
        return dict(json.loads(raw)) if raw else None

    def set_override(self, account: str, value: dict[str, Any] | None) -> None:
        key = account_tag(account) + ":pol"
        if value is None:
            self.r.delete(key)
        else:
            self.r.set(key, dumps(value))

    def append_audit(self, entry: dict[str, Any]) -> None:
        self.r.rpush("tg:audit", dumps(entry))

    def audit(self, limit: int = 200) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        return [json.loads(e) for e in reversed(self.r.lrange("tg:audit", -limit, -1))]

    async def shutdown(self) -> None:
        """Every decision was written before it was answered: nothing to hand back."""

    def close(self) -> None:
        self._pipe.close()
        self.r.close()
