"""Redis state shared by many `tollguard serve` processes.

Every change that must be atomic is one Lua script: check-and-reserve (so two servers
cannot both reserve the last euro), answer, end (settle), expire, reset. Money is
integer ten-thousandths. Keys of one account share the hash tag ``tg:{account}``; the
scripts also touch call keys (``tg:call:<id>``) they find through the account's live
set, so a single Redis server (or a primary with replicas) is required, not a cluster.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from tollguard.limits.periods import account_tag
from tollguard.limits.state import (
    BlockState,
    CallState,
    EndResult,
    ReserveRequest,
    ReserveResult,
    dumps,
)

TOMBSTONE_S = 86400
EXPIRE_BATCH = 20

_COMMON = r"""
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
""".replace("@TOMBSTONE@", str(TOMBSTONE_S))

# KEYS: blk, live, call, counts..., spends...
# ARGV: now, call_id, nc, ns, max_conc, want, min, ring_exp, hold, force, meta_json, acct,
#       then (limit, ttl, reason) per count, then per spend
_RESERVE = (
    _COMMON
    + r"""
local now = tonumber(ARGV[1])
local cid = ARGV[2]
local nc = tonumber(ARGV[3])
local ns = tonumber(ARGV[4])
local max_conc = tonumber(ARGV[5])
local want = tonumber(ARGV[6])
local minb = tonumber(ARGV[7])
local force = ARGV[10] == '1'
local old = redis.call('HMGET', KEYS[3], 'res', 'meta')
if old[1] then
  return {'dup', old[1], old[2]}
end
expire_account(KEYS[2], now, @BATCH@)
local fail = ''
local fval = 0
local flim = 0
if redis.call('EXISTS', KEYS[1]) == 1 then fail = 'account_blocked' end
local conc = redis.call('ZCARD', KEYS[2])
if fail == '' and max_conc >= 0 and conc + 1 > max_conc then
  fail = 'concurrent_calls'; fval = conc; flim = max_conc
end
local a = 13
for i = 1, nc do
  local lim = tonumber(ARGV[a])
  if fail == '' and lim >= 0 then
    local v = tonumber(redis.call('GET', KEYS[3 + i]) or '0')
    if v + 1 > lim then fail = ARGV[a + 2]; fval = v; flim = lim end
  end
  a = a + 3
end
local limited = false
local remaining = 0
local rreason = ''
local rlim = 0
for j = 1, ns do
  local lim = tonumber(ARGV[a])
  if lim >= 0 then
    local h = redis.call('HMGET', KEYS[3 + nc + j], 's', 'r')
    local left = lim - tonumber(h[1] or '0') - tonumber(h[2] or '0')
    if (not limited) or left < remaining then
      limited = true; remaining = left; rreason = ARGV[a + 2]; rlim = lim
    end
  end
  a = a + 3
end
local res = want
if limited then
  if remaining < minb and fail == '' then fail = rreason; fval = rlim - remaining; flim = rlim end
  if remaining < res then res = remaining end
end
if fail ~= '' and force then res = want end
if res < 0 then res = 0 end
local rem = ''
if limited then rem = tostring(remaining) end
if fail ~= '' and not force then
  return {'deny', fail, tostring(fval), tostring(flim), rem}
end
a = 13
for i = 1, nc do
  redis.call('INCR', KEYS[3 + i])
  redis.call('EXPIRE', KEYS[3 + i], tonumber(ARGV[a + 1]))
  a = a + 3
end
local spends = {}
for j = 1, ns do
  local k = KEYS[3 + nc + j]
  redis.call('HINCRBY', k, 'r', res)
  redis.call('EXPIRE', k, tonumber(ARGV[a + 1]))
  spends[#spends + 1] = k
  a = a + 3
end
local meta = cjson.decode(ARGV[11])
meta['spends'] = table.concat(spends, '\n')
meta['reason'] = fail
if fail ~= '' then meta['forced'] = '1' else meta['forced'] = '0' end
meta['hold'] = ARGV[9]
local mj = cjson.encode(meta)
redis.call('HSET', KEYS[3], 'acct', ARGV[12], 'res', res, 'spends', meta['spends'],
  'state', 'ringing', 'started', ARGV[1], 'expires', ARGV[8], 'hold', ARGV[9], 'meta', mj)
redis.call('ZADD', KEYS[2], tonumber(ARGV[8]), cid)
redis.call('SADD', 'tg:accounts-live', ARGV[12])
return {'ok', fail, tostring(fval), tostring(flim), rem, tostring(res), mj}
""".replace("@BATCH@", str(EXPIRE_BATCH))
)

# KEYS: call ; ARGV: now, expires_at
_ANSWER = r"""
local c = redis.call('HMGET', KEYS[1], 'acct', 'state')
if not c[1] then return 0 end
if c[2] == 'ringing' then
  local exp = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'state', 'answered', 'answered', ARGV[1], 'expires', tostring(exp))
  redis.call('ZADD', 'tg:{' .. c[1] .. '}:live', 'XX', exp, string.sub(KEYS[1], 9))
end
return 1
"""

# KEYS: call ; ARGV: cost, call_id
_END = (
    _COMMON
    + r"""
local c = redis.call('HMGET', KEYS[1], 'acct', 'state')
if not c[1] then return 'unknown' end
if c[2] == 'ended' or c[2] == 'expired' then return 'already_ended' end
settle(ARGV[2], false, 'ended', tonumber(ARGV[1]))
return 'ended'
"""
)

# KEYS: live ; ARGV: now
_EXPIRE = (
    _COMMON
    + r"""
return expire_account(KEYS[1], tonumber(ARGV[1]), 0)
"""
)

# KEYS: live
_RELEASE = (
    _COMMON
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


def _call_key(call_id: str) -> str:
    return "tg:call:" + call_id


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

    def ping(self) -> bool:
        return bool(self.r.ping())

    def reserve(self, req: ReserveRequest) -> ReserveResult:
        tag = account_tag(req.account)
        keys = [tag + ":blk", tag + ":live", _call_key(req.call_id)]
        keys += [c.key for c in req.counts]
        keys += [c.key for c in req.spends]
        args: list[Any] = [
            repr(req.now),
            req.call_id,
            len(req.counts),
            len(req.spends),
            req.max_concurrent,
            req.want_e4,
            req.min_e4,
            repr(req.ring_expires_at),
            repr(req.hold_s),
            "1" if req.force else "0",
            json.dumps(req.meta),
            req.account,
        ]
        for c in (*req.counts, *req.spends):
            args += [c.limit, c.ttl_s, c.reason]
        out = self._reserve(keys=keys, args=args)
        kind = out[0]
        if kind == "dup":
            meta = json.loads(out[2]) if out[2] else {}
            return ReserveResult(
                ok=True,
                reason=meta.get("reason", ""),
                reserved_e4=int(out[1]),
                duplicate=True,
                meta=meta,
            )
        rem = int(out[4]) if out[4] != "" else None
        if kind == "deny":
            return ReserveResult(
                ok=False, reason=out[1], value=int(out[2]), limit=int(out[3]), remaining_e4=rem
            )
        return ReserveResult(
            ok=True,
            reason=out[1],
            value=int(out[2]),
            limit=int(out[3]),
            remaining_e4=rem,
            reserved_e4=int(out[5]),
            meta=json.loads(out[6]),
        )

    def get_call(self, call_id: str) -> CallState | None:
        h = self.r.hgetall(_call_key(call_id))
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
            meta=json.loads(h.get("meta") or "{}"),
            cost_e4=int(h["cost"]) if "cost" in h else None,
        )

    def answer(self, call_id: str, now: float, expires_at: float) -> CallState | None:
        if not self._answer(keys=[_call_key(call_id)], args=[repr(now), repr(expires_at)]):
            return None
        return self.get_call(call_id)

    def end(self, call_id: str, cost_e4: int, now: float) -> EndResult:
        status = str(self._end(keys=[_call_key(call_id)], args=[cost_e4, call_id]))
        return EndResult(status, self.get_call(call_id) if status != "unknown" else None)

    def expire(self, now: float, account: str | None = None) -> int:
        accounts = (
            [account]
            if account is not None
            else sorted(str(a) for a in self.r.smembers("tg:accounts-live"))
        )
        n = 0
        for acct in accounts:
            live = account_tag(acct) + ":live"
            n += int(self._expire(keys=[live], args=[repr(now)]))
            if account is None and not self.r.exists(live):
                self.r.srem("tg:accounts-live", acct)
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

    def close(self) -> None:
        self.r.close()
