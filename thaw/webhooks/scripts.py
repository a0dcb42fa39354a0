"""The atomic webhook store operations, one Lua script each (ARGV as in ``thaw.store.lua``)."""

from __future__ import annotations

from thaw.store.lua import script

CREATE = script(
    r"""
local tenant, id, max = ARGV[3], ARGV[4], tonumber(ARGV[8])
local set = key_webhooks_by_tenant(tenant)
if redis.call('ZCARD', set) >= max then return {'quota'} end
local t = now()
redis.call('HSET', key_webhook(id), 'id', id, 'tenant', tenant, 'url', ARGV[5],
  'events', ARGV[6], 'description', ARGV[7], 'secret', ARGV[9], 'created_at', ts(t))
redis.call('ZADD', set, t, id)
return {'created', ts(t)}
"""
)

DELETE = script(
    r"""
local id, tenant = ARGV[3], ARGV[4]
local owner = redis.call('HGET', key_webhook(id), 'tenant')
if not owner or (tenant ~= '' and owner ~= tenant) then return 0 end
for _, eid in ipairs(redis.call('ZRANGE', key_webhook_deliveries(id), 0, -1)) do
  redis.call('DEL', key_webhook_delivery(id, eid))
  redis.call('ZREM', key_webhooks_due(), id .. ' ' .. eid)
end
redis.call('DEL', key_webhook_deliveries(id), key_webhook(id))
redis.call('ZREM', key_webhooks_by_tenant(owner), id)
return 1
"""
)

# A delivery per (webhook, event), created once however often its feed entry is read.
ADD_DELIVERY = script(
    r"""
local wid, eid, kept = ARGV[3], ARGV[4], tonumber(ARGV[8])
local dk = key_webhook_delivery(wid, eid)
if redis.call('EXISTS', key_webhook(wid)) == 0 or redis.call('EXISTS', dk) == 1 then
  return 0
end
local t = now()
redis.call('HSET', dk, 'id', eid, 'webhook_id', wid, 'type', ARGV[5], 'job_id', ARGV[6],
  'payload', ARGV[7], 'status', 'pending', 'attempts', 0, 'created_at', ts(t),
  'next_attempt_at', ts(t), 'last_attempt_at', '', 'response_status', '', 'error', '',
  'tries', '[]')
local list = key_webhook_deliveries(wid)
redis.call('ZADD', list, t, eid)
redis.call('ZADD', key_webhooks_due(), t, wid .. ' ' .. eid)
local over = redis.call('ZCARD', list) - kept
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', list, 0, over - 1)) do
    redis.call('DEL', key_webhook_delivery(wid, old))
    redis.call('ZREM', key_webhooks_due(), wid .. ' ' .. old)
  end
  redis.call('ZREMRANGEBYRANK', list, 0, over - 1)
end
return 1
"""
)

# Take up to N due deliveries: each try is counted and its member pushed a lease ahead,
# so a dispatcher that dies mid-try leaves the delivery to another one after the lease.
CLAIM_DUE = script(
    r"""
local n, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local due = key_webhooks_due()
local t = now()
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', ts(t), 'LIMIT', 0, n)) do
  local sp = string.find(m, ' ', 1, true)
  local wid, eid = string.sub(m, 1, sp - 1), string.sub(m, sp + 1)
  local dk = key_webhook_delivery(wid, eid)
  if redis.call('EXISTS', dk) == 0 or redis.call('EXISTS', key_webhook(wid)) == 0 then
    redis.call('ZREM', due, m)
  else
    local attempt = redis.call('HINCRBY', dk, 'attempts', 1)
    redis.call('HSET', dk, 'last_attempt_at', ts(t), 'next_attempt_at', ts(t + lease))
    redis.call('ZADD', due, ts(t + lease), m)
    out[#out + 1] = wid
    out[#out + 1] = eid
    out[#out + 1] = attempt
  end
end
return out
"""
)

SETTLE = script(
    r"""
local wid, eid, attempt, ok = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1'
local code, err, retry_in, max = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local dk = key_webhook_delivery(wid, eid)
local m = wid .. ' ' .. eid
if redis.call('EXISTS', dk) == 0 then
  redis.call('ZREM', key_webhooks_due(), m)
  return 'missing'
end
local t = now()
local tries = cjson.decode(redis.call('HGET', dk, 'tries') or '[]')
local try = {attempt = attempt, at = ts(t), error = err}
if code then try['status_code'] = code end
tries[#tries + 1] = try
redis.call('HSET', dk, 'tries', cjson.encode(tries))
if redis.call('HGET', dk, 'status') == 'succeeded' then return 'done' end
redis.call('HSET', dk, 'response_status', ARGV[7], 'error', err)
if ok then
  redis.call('HSET', dk, 'status', 'succeeded', 'next_attempt_at', '')
  redis.call('ZREM', key_webhooks_due(), m)
  return 'succeeded'
end
if attempt >= max then
  redis.call('HSET', dk, 'status', 'failed', 'next_attempt_at', '')
  redis.call('ZREM', key_webhooks_due(), m)
  return 'failed'
end
redis.call('HSET', dk, 'status', 'pending', 'next_attempt_at', ts(t + retry_in))
redis.call('ZADD', key_webhooks_due(), ts(t + retry_in), m)
return 'retry'
"""
)
