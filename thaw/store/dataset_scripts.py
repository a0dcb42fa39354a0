"""Atomic dataset record writes (see ``thaw.store.lua`` for ARGV)."""

from __future__ import annotations

from thaw.store.lua import script

NEW_ID = script(
    r"""
return new_id(ARGV[3], ARGV[4])
"""
)

CREATE = script(
    r"""
local id, tenant = ARGV[3], ARGV[4]
local k = key_dataset(id)
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('HSET', k, 'tenant', tenant, 'record', ARGV[5], 'size_bytes', ARGV[6])
redis.call('ZADD', key_datasets_by_tenant(tenant), 0, id)
return 1
"""
)

DELETE = script(
    r"""
local id, tenant = ARGV[3], ARGV[4]
local k = key_dataset(id)
local h = redis.call('HGETALL', k)
if #h == 0 or redis.call('HGET', k, 'tenant') ~= tenant then return {} end
redis.call('DEL', k)
redis.call('ZREM', key_datasets_by_tenant(tenant), id)
return h
"""
)
