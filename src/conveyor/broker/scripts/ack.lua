-- ack.lua: finish jobs that succeeded; refuse acks whose fencing token is no longer in flight.
--
-- KEYS[1]  inflight       HASH token -> "<queue>\n<raw>" of this worker
-- ARGV[1]  status prefix  string; a job's status key is prefix..jid
-- ARGV[2]  status ttl     seconds
-- ARGV[3]  job count n
-- ARGV[4 + 3*i .. 6 + 3*i]  for job i: token, jid ("" if unknown), result JSON ("" for none)
-- Returns: array of the tokens that were refused (recovered by another worker meanwhile)
-- (Prefixed with _stamp.lua and _flow.lua: releases unique locks and moves workflows on.)

local sprefix, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now_s = string.format('%d.%06d', t[1], t[2])
local refused = {}
for i = 0, n - 1 do
  local token, jid, result = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  if redis.call('HDEL', KEYS[1], token) == 0 then
    refused[#refused + 1] = token
  elseif jid ~= '' then
    local skey = sprefix .. jid
    if result ~= '' then
      redis.call('HSET', skey, 'state', 'completed', 'finished_at', now_s, 'result', result)
    else
      redis.call('HSET', skey, 'state', 'completed', 'finished_at', now_s)
    end
    redis.call('EXPIRE', skey, ttl)
    flow_event(skey, jid, 'completed', now_s, result)
  end
end
return refused
