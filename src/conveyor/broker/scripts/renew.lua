-- renew.lua: extend a worker's lease, unless it was already presumed dead and recovered.
--
-- KEYS[1]  leases    ZSET worker id -> lease expiry, ms on the Redis clock
-- ARGV[1]  worker id
-- ARGV[2]  lease ttl ms
-- Returns: 1 renewed; 0 fenced (the lease is gone: this worker's in-flight jobs were requeued)

if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
return 1
