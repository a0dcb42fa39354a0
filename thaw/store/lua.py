"""Lua shared by the store scripts. Every script takes ARGV[1] = key prefix and
ARGV[2] = event stream cap; its own arguments start at ARGV[3]. Times come from
the Redis server clock, so workers on hosts with skewed clocks agree on leases.
"""

from __future__ import annotations

from thaw.job_status import TERMINAL_STATUSES, JobStatus
from thaw.store.keys import WEBHOOK_FEED_MAXLEN, lua_key_functions

PRELUDE = (
    r"""
local P = ARGV[1]
local MAXLEN = ARGV[2]
"""
    + f"local FEED_MAXLEN = {WEBHOOK_FEED_MAXLEN}\n"
    + lua_key_functions()
    + r"""

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function ts(x) return string.format('%.6f', x) end

-- Seconds this Redis has answered since it (re)started, as first seen by a script: after
-- a restart every stored lease looks expired, though its holder may be alive and only
-- waiting for Redis to come back to renew it.
local function up_for()
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
  local boot = key_redis_boot()
  local seen = redis.call('HMGET', boot, 'run_id', 'since')
  local t = now()
  if seen[1] ~= run or not tonumber(seen[2]) then
    redis.call('HSET', boot, 'run_id', run, 'since', ts(t))
    return 0
  end
  return t - tonumber(seen[2])
end

-- job_/ds_ + 12 hex ms + 4 hex counter + 8 hex random: ids sort by creation
-- order across every process that shares this Redis.
local function new_id(kind, rand)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local clock = key_id_clock()
  local last = redis.call('HMGET', clock, 'ms', 'n')
  local last_ms = tonumber(last[1]) or 0
  local n = 0
  if ms <= last_ms then
    ms = last_ms
    n = (tonumber(last[2]) or 0) + 1
    if n > 65535 then
      ms = ms + 1
      n = 0
    end
  end
  redis.call('HSET', clock, 'ms', string.format('%d', ms), 'n', n)
  return kind .. string.format('%012x%04x', ms, n) .. rand
end
"""
)


def lua_job_statuses() -> str:
    """``local QUEUED = 'queued'`` for every job status, and the set ``TERMINAL``."""
    names = "".join(f"local {s.name} = '{s.value}'\n" for s in JobStatus)
    terminal = ", ".join(f"[{s.name}] = true" for s in JobStatus if s in TERMINAL_STATUSES)
    return names + f"local TERMINAL = {{{terminal}}}\n"


JOB_HELPERS = (
    lua_job_statuses()
    + r"""

local function index_status(id, tenant, from, to)
  if from then
    redis.call('ZREM', key_jobs_by_status(from), id)
    redis.call('ZREM', key_jobs_by_tenant_status(tenant, from), id)
  end
  redis.call('ZADD', key_jobs_by_status(to), 0, id)
  redis.call('ZADD', key_jobs_by_tenant_status(tenant, to), 0, id)
end

-- A status event also goes to the webhook feed when the job's tenant has a webhook, in
-- the same script, so no transition is ever missed by the webhook dispatcher.
local function emit(id, data, level)
  local h = redis.call('HMGET', key_job(id), 'token', 'tenant')
  local encoded = cjson.encode(data)
  local eid = redis.call('XADD', key_job_events(id), 'MAXLEN', '~', MAXLEN, '*',
    'type', 'status', 'level', level or 'info', 'data', encoded, 'token', h[1] or '0')
  if h[2] and redis.call('EXISTS', key_webhooks_by_tenant(h[2])) == 1 then
    redis.call('XADD', key_webhook_feed(), 'MAXLEN', '~', FEED_MAXLEN, '*',
      'job', id, 'tenant', h[2], 'event', eid, 'data', encoded)
  end
end

-- Fencing: a write of a job's holder names its worker and the claim's token (the
-- generation number the claim handed out); '' skips the token check (callers that
-- predate fencing). A stale token is refused even for the same worker id.
local function holds(id, worker, token)
  local h = redis.call('HMGET', key_job(id), 'status', 'worker', 'token')
  if h[1] ~= RUNNING or h[2] ~= worker then return false end
  return token == '' or (h[3] or '0') == token
end

local function reply(code, id)
  local out = {code}
  local h = redis.call('HGETALL', key_job(id))
  for i = 1, #h do out[#out + 1] = h[i] end
  return out
end

local function finalize(id, tenant, from, to, err, t)
  redis.call('HSET', key_job(id), 'status', to, 'error', err, 'worker', '',
    'lease_expires_at', '', 'finished_at', ts(t), 'updated_at', ts(t))
  redis.call('ZREM', key_leases(), id)
  index_status(id, tenant, from, to)
end
"""
)


def script(body: str, *, jobs: bool = False) -> str:
    return PRELUDE + (JOB_HELPERS if jobs else "") + body
