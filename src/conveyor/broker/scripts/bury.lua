-- bury.lua: move one quarantined entry into the dead set, rewritten with its error fields.
--
-- KEYS[1]  quarantine     LIST "<reason>\n<raw>"
-- KEYS[2]  dead           ZSET raw -> time of death, epoch seconds
-- ARGV[1]  entry          the exact quarantine entry to remove
-- ARGV[2]  dead raw       the job JSON with error fields, as it goes into the dead set
-- ARGV[3]  jid            job id ("" if none)
-- ARGV[4]  status prefix  string; a job's status key is prefix..jid
-- ARGV[5]  status ttl     seconds
-- ARGV[6]  error class    string
-- ARGV[7]  error message  string
-- ARGV[8]  dead max jobs  count kept
-- ARGV[9]  dead timeout   seconds
-- Returns: 1 buried; 0 the entry was gone (another worker buried it)
-- (Prefixed with _stamp.lua and _flow.lua: releases unique locks and moves workflows on.)

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local now_s = string.format('%d.%06d', t[1], t[2])
redis.call('ZADD', KEYS[2], now_s, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.6f', now - tonumber(ARGV[9])))
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[8]) + 1))
if ARGV[3] ~= '' then
  local skey = ARGV[4] .. ARGV[3]
  redis.call('HSET', skey, 'state', 'dead', 'finished_at', now_s,
    'error_class', ARGV[6], 'error_message', ARGV[7])
  redis.call('EXPIRE', skey, tonumber(ARGV[5]))
  flow_event(skey, ARGV[3], 'dead', now_s, '', ARGV[6], ARGV[7])
end
return 1
