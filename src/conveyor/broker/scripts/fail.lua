-- fail.lua: a job failed (or was cancelled, or is malformed): schedule its retry, bury it in the
-- dead set, or drop it, and record why. Refused when the fencing token is no longer in flight.
--
-- KEYS[1]  inflight       HASH token -> "<queue>\n<raw>" of this worker
-- KEYS[2]  retry          ZSET raw -> next attempt time, epoch seconds (Sidekiq)
-- KEYS[3]  dead           ZSET raw -> time of death, epoch seconds (Sidekiq)
-- ARGV[1]  token          fencing token of the in-flight entry
-- ARGV[2]  jid            job id ("" when the payload had none)
-- ARGV[3]  mode           "retry" | "dead" | "discard" | "cancelled"
-- ARGV[4]  new raw        the job JSON rewritten with its error fields (retry/dead)
-- ARGV[5]  delay          seconds until the retry (retry mode)
-- ARGV[6]  status prefix  string; a job's status key is prefix..jid
-- ARGV[7]  status ttl     seconds
-- ARGV[8]  error class    string
-- ARGV[9]  error message  string (already cut to size)
-- ARGV[10] dead max jobs  count kept in the dead set
-- ARGV[11] dead timeout   seconds an entry stays in the dead set
-- Returns: 1 done, 0 refused (stale token)
-- (Prefixed with _stamp.lua and _flow.lua: releases unique locks and moves workflows on.)

local token, jid, mode = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HDEL', KEYS[1], token) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local now_s = string.format('%d.%06d', t[1], t[2])
local state = 'failed'
if mode == 'retry' then
  redis.call('ZADD', KEYS[2], string.format('%.6f', now + tonumber(ARGV[5])), ARGV[4])
  state = 'retrying'
elseif mode == 'dead' then
  redis.call('ZADD', KEYS[3], now_s, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.6f', now - tonumber(ARGV[11])))
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[10]) + 1))
  state = 'dead'
elseif mode == 'cancelled' then
  state = 'cancelled'
end
if jid ~= '' then
  local skey = ARGV[6] .. jid
  redis.call('HSET', skey, 'state', state, 'finished_at', now_s,
    'error_class', ARGV[8], 'error_message', ARGV[9])
  if mode == 'retry' then
    redis.call('HSET', skey, 'retry_at', string.format('%.6f', now + tonumber(ARGV[5])))
  end
  redis.call('EXPIRE', skey, tonumber(ARGV[7]))
  flow_event(skey, jid, state, now_s, '', ARGV[8], ARGV[9])
end
return 1
