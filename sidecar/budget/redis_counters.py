"""Budget counters shared by every replica through Redis (R-CC-3).

Each decision and each update is one Lua script, so it is atomic against every other replica (scripts
read the server's ``TIME`` before writing: Redis >= 5). Keys
(``prefix`` default ``sidecar:``; for Redis Cluster use a hash-tagged prefix such as ``{sidecar}:`` so a
script's keys share a slot):

* ``{p}s:{session}``: hash ``used_nanos used_tokens model_calls tool_calls res_nanos res_tokens
  res_calls``, one ``r:{id}`` field per live reservation, ``w:{limit}`` warned flags; TTL ``session_ttl_s``
  (refreshed on use). ``{p}sr:{session}``: zset of live reservation ids scored by their deadline.
* ``{p}a:{app}:{day}`` / ``{p}ar:{app}:{day}``: the same for an app's UTC day (USD fields only), TTL
  ``app_day_ttl_s``.
* ``{p}sb:{session}``, ``{p}ab:{app}``: block markers, no TTL (until unblocked).

USD is held in integer nano-dollars (``HINCRBY``): exact sums, no float drift; Lua reads them as doubles,
exact up to 2^53 nano-dollars (about $9 million per counter). Amounts cross into Redis commands as the
decimal strings Python sent, never as Lua numbers (Lua would print large ones in exponent form).
A reservation whose replica died before reconciling expires after ``reservation_ttl_s`` (it is purged by
the next script touching its scope); a call that outlives it loses only its share of the burst bound.
Errors and timeouts become :class:`sidecar.budget.CountersUnavailable`; after one, calls fail fast for
``cooldown_s`` instead of waiting on a dead server, then the pool reconnects by itself.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sidecar.budget import APP_SCOPE, CountersUnavailable, Decision, Reconciled, Reservation, Snapshot
from sidecar.core.budget_config import (
    APP_DAILY_USD,
    SESSION_MODEL_CALLS,
    SESSION_TOKENS,
    SESSION_TOOL_CALLS,
    SESSION_USD,
    WARN,
    Limits,
)
from sidecar.core.budget_counts import Breach, Counts, threshold
from sidecar.core.budget_estimate import Actual, Estimate

_LIB = """
local function hincr(h, f, v) if v ~= '0' then redis.call('HINCRBY', h, f, v) end end
local function neg(v) if v == '0' then return '0' end return '-' .. v end
local function release(h, z, id)
  if redis.call('ZREM', z, id) == 0 then return end
  local v = redis.call('HGET', h, 'r:' .. id)
  redis.call('HDEL', h, 'r:' .. id)
  if not v then return end
  local n, t, c = string.match(v, '^(%d+) (%d+) (%d+)$')
  hincr(h, 'res_nanos', neg(n)); hincr(h, 'res_tokens', neg(t)); hincr(h, 'res_calls', neg(c))
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function purge(h, z)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 100)) do release(h, z, id) end
end
local S = {'used_nanos', 'used_tokens', 'model_calls', 'tool_calls', 'res_nanos', 'res_tokens', 'res_calls'}
local function counts(h) local r = redis.call('HMGET', h, unpack(S))
  for i = 1, #S do r[i] = r[i] or '0' end return r end
"""

# KEYS: s, sr, a, ar, sb, ab. ARGV: id, nanos, tokens, caps x5 ('-1' = none), warn, has_session,
# session ttl, app-day ttl, reservation ttl (ms).
# Returns {admitted, blocked, [limit, cap, used, reserved]...}.
_ADMIT = (
    _LIB
    + """
local id, nanos, tokens = ARGV[1], ARGV[2], ARGV[3]
local has_s = ARGV[10] == '1'
local blocked = ''
if has_s and redis.call('EXISTS', KEYS[5]) == 1 then blocked = 'session'
elseif redis.call('EXISTS', KEYS[6]) == 1 then blocked = 'app' end
local out = {}
local function check(name, cap, used, reserved)
  if cap ~= '-1' and tonumber(used) + tonumber(reserved) >= tonumber(cap) then
    table.insert(out, name); table.insert(out, cap); table.insert(out, used); table.insert(out, reserved)
  end
end
if has_s then
  purge(KEYS[1], KEYS[2])
  local s = counts(KEYS[1])
  check('session_usd', ARGV[4], s[1], s[5]); check('session_tokens', ARGV[5], s[2], s[6])
  check('session_model_calls', ARGV[6], s[3], s[7]); check('session_tool_calls', ARGV[7], s[4], '0')
end
purge(KEYS[3], KEYS[4])
local a = counts(KEYS[3])
check('app_daily_usd', ARGV[8], a[1], a[5])
if ARGV[9] ~= '1' and (blocked ~= '' or #out > 0) then return {0, blocked, unpack(out)} end
local deadline = now + tonumber(ARGV[13])
if has_s then
  redis.call('ZADD', KEYS[2], deadline, id)
  redis.call('HSET', KEYS[1], 'r:' .. id, nanos .. ' ' .. tokens .. ' 1')
  hincr(KEYS[1], 'res_nanos', nanos); hincr(KEYS[1], 'res_tokens', tokens); hincr(KEYS[1], 'res_calls', '1')
  redis.call('EXPIRE', KEYS[1], ARGV[11]); redis.call('EXPIRE', KEYS[2], ARGV[11])
end
redis.call('ZADD', KEYS[4], deadline, id)
redis.call('HSET', KEYS[3], 'r:' .. id, nanos .. ' 0 0')
hincr(KEYS[3], 'res_nanos', nanos)
redis.call('EXPIRE', KEYS[3], ARGV[12]); redis.call('EXPIRE', KEYS[4], ARGV[12])
return {1, blocked, unpack(out)}
"""
)

# KEYS: s, sr, a, ar. ARGV: id, nanos, tokens, model_calls, tool_calls, has_session, session ttl,
# app-day ttl, warning thresholds x5 ('-1' = none). Returns {session counts x7, app counts x7, warned...}.
_RECONCILE = (
    _LIB
    + """
local has_s = ARGV[6] == '1'
if has_s then
  release(KEYS[1], KEYS[2], ARGV[1])
  hincr(KEYS[1], 'used_nanos', ARGV[2]); hincr(KEYS[1], 'used_tokens', ARGV[3])
  hincr(KEYS[1], 'model_calls', ARGV[4]); hincr(KEYS[1], 'tool_calls', ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
end
release(KEYS[3], KEYS[4], ARGV[1])
hincr(KEYS[3], 'used_nanos', ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[8])
local s, a = counts(KEYS[1]), counts(KEYS[3])
local out = {}
for i = 1, 7 do out[i] = s[i]; out[7 + i] = a[i] end
local names = {'session_usd', 'session_tokens', 'session_model_calls', 'session_tool_calls'}
for i = 1, 4 do
  if has_s and ARGV[8 + i] ~= '-1' and tonumber(s[i]) >= tonumber(ARGV[8 + i])
     and redis.call('HSETNX', KEYS[1], 'w:' .. names[i], '1') == 1 then table.insert(out, names[i]) end
end
if ARGV[13] ~= '-1' and tonumber(a[1]) >= tonumber(ARGV[13])
   and redis.call('HSETNX', KEYS[3], 'w:app_daily_usd', '1') == 1 then table.insert(out, 'app_daily_usd') end
return out
"""
)

_CAP_ORDER = (SESSION_USD, SESSION_TOKENS, SESSION_MODEL_CALLS, SESSION_TOOL_CALLS, APP_DAILY_USD)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _counts(values: Sequence[Any]) -> Counts:
    return Counts(*(int(_text(v)) for v in values))


class RedisCounters:
    """:class:`sidecar.budget.BudgetCounters` in Redis. Build with :meth:`from_url`; ``aclose`` at exit."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "sidecar:",
        timeout_s: float = 0.25,
        cooldown_s: float = 0.5,
        session_ttl_s: int = 7 * 86400,
        app_day_ttl_s: int = 3 * 86400,
        reservation_ttl_s: float = 3600.0,
    ) -> None:
        self._client = client
        self._p = prefix
        self._timeout = timeout_s
        self._cooldown = cooldown_s
        self._ttls = (str(session_ttl_s), str(app_day_ttl_s), str(round(reservation_ttl_s * 1000)))
        self._down_until = 0.0
        self._admit = client.register_script(_ADMIT)
        self._reconcile = client.register_script(_RECONCILE)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.25, **kwargs: Any) -> RedisCounters:
        """A client with short socket timeouts and no retries: the request path must not wait long."""
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, timeout_s=timeout_s, **kwargs)

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        if time.monotonic() < self._down_until:
            raise CountersUnavailable("redis marked down after a recent failure")
        try:
            async with asyncio.timeout(self._timeout * 2):  # bounds connect + command together
                yield
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self._cooldown
            raise CountersUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def _keys(self, session_id: str, app: str, day: str) -> list[str]:
        p = self._p
        return [f"{p}s:{session_id}", f"{p}sr:{session_id}", f"{p}a:{app}:{day}", f"{p}ar:{app}:{day}"]

    async def try_reserve(
        self, session_id: str, app: str, day: str, limits: Limits, estimate: Estimate
    ) -> Decision:
        caps = limits.caps()
        keys = [*self._keys(session_id, app, day), f"{self._p}sb:{session_id}", f"{self._p}ab:{app}"]
        res = Reservation(secrets.token_hex(8), session_id, app, day, limits, estimate.nanos, estimate.tokens)
        args = [res.id, str(estimate.nanos), str(estimate.tokens)]
        args += [str(caps.get(name, -1)) for name in _CAP_ORDER]
        args += ["1" if limits.mode == WARN else "0", "1" if session_id else "0", *self._ttls]
        async with self._guard():
            reply = await self._admit(keys=keys, args=args)
        rows = reply[2:]
        found = tuple(
            Breach(_text(rows[i]), int(rows[i + 1]), int(rows[i + 2]), int(rows[i + 3]))
            for i in range(0, len(rows), 4)
        )
        blocked = _text(reply[1]) or None
        admitted = int(reply[0]) == 1
        return Decision(admitted, res if admitted else None, found, blocked)

    async def reconcile(self, reservation: Reservation, actual: Actual) -> Reconciled:
        return await self._settle(reservation, actual)

    async def release(self, reservation: Reservation) -> None:
        await self._settle(reservation, Actual(), warn=False)

    async def _settle(self, res: Reservation, actual: Actual, *, warn: bool = True) -> Reconciled:
        caps = res.limits.caps() if warn else {}
        args = [
            res.id,
            str(actual.nanos),
            str(actual.tokens),
            str(actual.model_calls),
            str(actual.tool_calls),
        ]
        args += ["1" if res.session_id else "0", *self._ttls[:2]]
        args += [str(threshold(caps[name])) if name in caps else "-1" for name in _CAP_ORDER]
        async with self._guard():
            reply = await self._reconcile(keys=self._keys(res.session_id, res.app, res.day), args=args)
        session = _counts(reply[0:7]) if res.session_id else None
        snapshot = Snapshot(session, _counts(reply[7:14]))
        return Reconciled(snapshot, tuple(_text(n) for n in reply[14:]))

    def _block_key(self, scope: str, name: str) -> str:
        return f"{self._p}{'ab' if scope == APP_SCOPE else 'sb'}:{name}"

    async def block(self, scope: str, name: str) -> None:
        async with self._guard():
            await self._client.set(self._block_key(scope, name), b"1")

    async def unblock(self, scope: str, name: str) -> None:
        async with self._guard():
            await self._client.delete(self._block_key(scope, name))

    async def is_blocked(self, scope: str, name: str) -> bool:
        async with self._guard():
            return bool(await self._client.exists(self._block_key(scope, name)))

    async def usage(self, session_id: str, app: str, day: str) -> Snapshot:
        fields = ["used_nanos", "used_tokens", "model_calls", "tool_calls", "res_nanos", "res_tokens"]
        fields.append("res_calls")
        keys = self._keys(session_id, app, day)
        async with self._guard():
            s = await self._client.hmget(keys[0], fields) if session_id else None
            a = await self._client.hmget(keys[2], fields)

        def fill(values: Sequence[Any]) -> Counts:
            return _counts([v if v is not None else b"0" for v in values])

        return Snapshot(fill(s) if s is not None else None, fill(a))

    async def aclose(self) -> None:
        await self._client.aclose()
