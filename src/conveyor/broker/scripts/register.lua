-- register.lua: give a worker a lease (at start, or again after it was presumed dead).
--
-- KEYS[1]  leases       ZSET worker id -> lease expiry, ms on the Redis clock
-- KEYS[2]  workers      SET of worker ids with state in Redis
-- KEYS[3]  worker info  HASH worker id -> its info JSON
-- ARGV[1]  worker id
-- ARGV[2]  lease ttl ms
-- ARGV[3]  info JSON
-- Returns: 1
--
-- One script, run with allow-oom like every script that does not produce jobs: a worker must be
-- able to register on a full Redis, since draining the backlog is what frees it.

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 1
