-- ack.lua: finish jobs that succeeded; refuse acks whose fencing token is no longer in flight.
--
-- KEYS[1]  inflight       HASH token -> "<queue>\n<raw>" of this worker
-- ARGV[1]  status prefix  string; a job's status key is prefix..jid
-- ARGV[2]  status ttl     seconds
-- ARGV[3]  job count n
-- ARGV[4]  the n jobs packed: "token\tjid\tresult" for each, joined by "\n" (the worker's
--          form: one argument to encode instead of three per job), or else
-- ARGV[4 + 3*i .. 6 + 3*i]  for job i: token, jid ("" if unknown), result JSON ("" for none)
--          (used when a jid holds a tab or a newline; results are JSON, which holds neither)
-- Returns: array of the tokens that were refused (recovered by another worker meanwhile)
-- (Prefixed with _stamp.lua and _flow.lua: releases unique locks and moves workflows on.)

local sprefix, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now_s = string.format('%d.%06d', t[1], t[2])
local refused = {}
local packed, pos = #ARGV == 4 and ARGV[4], 1
for i = 0, n - 1 do
  local token, jid, result
  if packed then
    local a = string.find(packed, '\t', pos, true)
    local b = string.find(packed, '\t', a + 1, true)
    local c = string.find(packed, '\n', b + 1, true) or #packed + 1
    token, jid = string.sub(packed, pos, a - 1), string.sub(packed, a + 1, b - 1)
    result, pos = string.sub(packed, b + 1, c - 1), c + 1
  else
    token, jid, result = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  end
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
