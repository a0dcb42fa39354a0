"""The atomic job transitions, one Lua script each (see ``thaw.store.lua`` for ARGV)."""

from __future__ import annotations

from thaw.store.lua import script

CREATE = script(
    r"""
local tenant, rand, idem, body_hash = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local idem_ttl = tonumber(ARGV[7])
up_for()
if idem ~= '' then
  local cur = redis.call('HMGET', idem, 'job_id', 'body_hash')
  if cur[1] and redis.call('EXISTS', key_job(cur[1])) == 1 then
    if cur[2] == body_hash then return reply('existing', cur[1]) end
    return {'conflict', cur[1]}
  end
end
local id = new_id('job_', rand)
local t = ts(now())
redis.call('HSET', key_job(id), 'id', id, 'tenant', tenant, 'status', QUEUED,
  'name', ARGV[8], 'spec', ARGV[9], 'progress', '{}', 'metrics', '{}', 'trainable', '{}',
  'attempts', 0, 'max_attempts', ARGV[10], 'error', '', 'cancel_requested', '0',
  'worker', '', 'lease_expires_at', '', 'created_at', t, 'started_at', '',
  'finished_at', '', 'updated_at', t, 'token', 0, 'released', '0', 'dispatched_at', t)
redis.call('ZADD', key_jobs_by_tenant(tenant), 0, id)
index_status(id, tenant, nil, QUEUED)
if idem ~= '' then
  redis.call('HSET', idem, 'job_id', id, 'body_hash', body_hash)
  redis.call('EXPIRE', idem, idem_ttl)
end
emit(id, {status = QUEUED, attempts = 0})
return reply('created', id)
""",
    jobs=True,
)

CLAIM = script(
    r"""
local id, worker, lease = ARGV[3], ARGV[4], tonumber(ARGV[5])
local k = key_job(id)
local up = up_for()
local h = redis.call('HMGET', k, 'status', 'tenant', 'attempts', 'max_attempts',
  'cancel_requested', 'lease_expires_at', 'started_at', 'token', 'released', 'lease_s')
local status, tenant = h[1], h[2]
if not status then return {'missing'} end
local t = now()
local attempts = tonumber(h[3])
if status == QUEUED then
  if h[5] == '1' then return {'cancel_requested'} end
elseif status == RUNNING then
  local expires = tonumber(h[6])
  if expires and expires > t then return {'held'} end
  -- A lease that lapsed while Redis was away is its holder's to renew for one more
  -- whole lease, counted from when Redis answered again.
  if up < (tonumber(h[10]) or lease) then return {'held'} end
  if h[5] == '1' then
    finalize(id, tenant, status, CANCELLED, '', t)
    emit(id, {status = CANCELLED, attempts = attempts})
    return {'cancelled'}
  end
else
  return {'terminal'}
end
-- A job its holder handed back (released) resumes without being charged an attempt.
local released = status == QUEUED and h[9] == '1'
local max_attempts = tonumber(h[4])
if not released and attempts + 1 > max_attempts then
  local err = cjson.encode({code = 'max_attempts', message = string.format(
    'gave up after %d attempts (max_attempts=%d): each worker that ran the job ' ..
    'stopped without finishing it', attempts, max_attempts)})
  finalize(id, tenant, status, FAILED, err, t)
  emit(id, {status = FAILED, attempts = attempts, error = cjson.decode(err)}, 'error')
  return {'exhausted'}
end
if not released then attempts = attempts + 1 end
local token = (tonumber(h[8]) or 0) + 1
local started = h[7]
if not started or started == '' then started = ts(t) end
redis.call('HSET', k, 'status', RUNNING, 'attempts', attempts, 'worker', worker,
  'lease_expires_at', ts(t + lease), 'started_at', started, 'updated_at', ts(t),
  'token', token, 'released', '0', 'lease_s', lease)
redis.call('ZADD', key_leases(), ts(t + lease), id)
if status ~= RUNNING then index_status(id, tenant, status, RUNNING) end
emit(id, {status = RUNNING, attempts = attempts, worker = worker, token = token,
  resumed = started ~= ts(t)})
return reply('claimed', id)
""",
    jobs=True,
)

HEARTBEAT = script(
    r"""
local id, worker, lease, token = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if not holds(id, worker, token) then return 0 end
up_for()
local expires = ts(now() + lease)
redis.call('HSET', key_job(id), 'lease_expires_at', expires, 'lease_s', lease)
redis.call('ZADD', key_leases(), expires, id)
return 1
""",
    jobs=True,
)

FINISH = script(
    r"""
local id, worker, to, err, token = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if not holds(id, worker, token) then return {'not_holder'} end
local h = redis.call('HMGET', key_job(id), 'status', 'worker', 'tenant', 'attempts')
finalize(id, h[3], RUNNING, to, err, now())
local data = {status = to, attempts = tonumber(h[4])}
if err ~= '' then data['error'] = cjson.decode(err) end
emit(id, data, to == FAILED and 'error' or 'info')
return reply('finished', id)
""",
    jobs=True,
)

REQUEST_CANCEL = script(
    r"""
local id, tenant = ARGV[3], ARGV[4]
local h = redis.call('HMGET', key_job(id), 'status', 'tenant', 'cancel_requested', 'attempts')
if not h[1] or (tenant ~= '' and h[2] ~= tenant) then return {'missing'} end
local t = now()
if h[1] == QUEUED then
  redis.call('HSET', key_job(id), 'cancel_requested', '1')
  finalize(id, h[2], QUEUED, CANCELLED, '', t)
  emit(id, {status = CANCELLED, attempts = tonumber(h[4])})
elseif h[1] == RUNNING and h[3] ~= '1' then
  redis.call('HSET', key_job(id), 'cancel_requested', '1', 'updated_at', ts(t))
  emit(id, {status = RUNNING, attempts = tonumber(h[4]), cancel_requested = true})
end
return reply('ok', id)
""",
    jobs=True,
)

UPDATE_PROGRESS = script(
    r"""
local id, worker, progress, metrics, token = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if not holds(id, worker, token) then return 0 end
redis.call('HSET', key_job(id), 'progress', progress, 'updated_at', ts(now()))
if metrics ~= '' then redis.call('HSET', key_job(id), 'metrics', metrics) end
return 1
""",
    jobs=True,
)

SET_IF_EXISTS = script(
    r"""
local id, suffix, field, value = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if redis.call('EXISTS', key_job(id)) == 0 then return 0 end
redis.call('HSET', key_job(id) .. suffix, field, value)
return 1
"""
)

DELETE = script(
    r"""
local id, tenant = ARGV[3], ARGV[4]
local k = key_job(id)
local h = redis.call('HMGET', k, 'status', 'tenant')
if not h[1] or (tenant ~= '' and h[2] ~= tenant) then return {'missing'} end
if not TERMINAL[h[1]] then return {'not_terminal', h[1]} end
redis.call('DEL', k, key_job_layers(id), key_job_events(id))
redis.call('ZREM', key_jobs_by_tenant(h[2]), id)
redis.call('ZREM', key_jobs_by_status(h[1]), id)
redis.call('ZREM', key_jobs_by_tenant_status(h[2], h[1]), id)
redis.call('ZREM', key_leases(), id)
return {'deleted'}
""",
    jobs=True,
)

HOLDER_EVENT = script(
    r"""
local id, worker, token, kind, level, data = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if not holds(id, worker, token) then return '' end
return redis.call('XADD', key_job_events(id), 'MAXLEN', '~', MAXLEN, '*',
  'type', kind, 'level', level, 'data', data, 'token', token)
""",
    jobs=True,
)

HOLDER_SET = script(
    r"""
local id, worker, token, suffix, field, value = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if not holds(id, worker, token) then return 0 end
redis.call('HSET', key_job(id) .. suffix, field, value)
return 1
""",
    jobs=True,
)

CHECK = script(
    r"""
local id, worker, token = ARGV[3], ARGV[4], ARGV[5]
local h = redis.call('HMGET', key_job(id), 'lease_expires_at', 'cancel_requested')
local cancel = h[2] or '0'
if not holds(id, worker, token) then return {'lost', cancel} end
local expires = tonumber(h[1])
if not expires or expires <= now() then return {'expired', cancel} end
return {'held', cancel}
""",
    jobs=True,
)

RELEASE = script(
    r"""
local id, worker, token = ARGV[3], ARGV[4], ARGV[5]
if not holds(id, worker, token) then return {'not_holder'} end
local h = redis.call('HMGET', key_job(id), 'tenant', 'attempts', 'cancel_requested')
local t = now()
local attempts = tonumber(h[2])
if h[3] == '1' then
  finalize(id, h[1], RUNNING, CANCELLED, '', t)
  emit(id, {status = CANCELLED, attempts = attempts})
  return {'cancelled'}
end
redis.call('HSET', key_job(id), 'status', QUEUED, 'worker', '', 'lease_expires_at', '',
  'released', '1', 'dispatched_at', ts(t), 'updated_at', ts(t))
redis.call('ZREM', key_leases(), id)
index_status(id, h[1], RUNNING, QUEUED)
emit(id, {status = QUEUED, attempts = attempts, released = true})
return {'released'}
""",
    jobs=True,
)

REDISPATCH = script(
    r"""
local id, period = ARGV[3], tonumber(ARGV[4])
local h = redis.call('HMGET', key_job(id), 'status', 'cancel_requested', 'dispatched_at',
  'lease_expires_at', 'token', 'lease_s')
local t = now()
local last = tonumber(h[3]) or 0
local due = t - last >= period
local why
if h[1] == QUEUED then
  if h[2] == '1' or not due then return 0 end
  why = string.format('queued for %.1f s without a live message', t - last)
elseif h[1] == RUNNING then
  local expires = tonumber(h[4])
  if not expires or expires > t or up_for() < (tonumber(h[6]) or 0) then return 0 end
  if not (due or last < expires) then return 0 end
  why = string.format('its lease expired %.1f s ago', t - expires)
else
  return 0
end
redis.call('HSET', key_job(id), 'dispatched_at', ts(t))
redis.call('XADD', key_job_events(id), 'MAXLEN', '~', MAXLEN, '*', 'type', 'log',
  'level', 'warning', 'data', cjson.encode({message = 're-dispatched: ' .. why,
  redispatched = true}), 'token', h[5] or '0')
return 1
""",
    jobs=True,
)
