-- promote.lua: move due jobs from a sorted set (schedule or retry) to their queues, each exactly
-- once however many schedulers run, with a fresh enqueued_at. (Prefixed with _stamp.lua and
-- _flow.lua: a dropped cancelled job ends its workflow step.)
--
-- KEYS[1]  source         ZSET raw -> due time, epoch seconds (schedule or retry)
-- KEYS[2]  queues         SET of queue names
-- KEYS[3]  quarantine     LIST "<reason>\n<raw>" of entries the worker must bury in the dead set
-- ARGV[1]  queue prefix   string, e.g. "queue:"
-- ARGV[2]  status prefix  string; a job's status key is prefix..jid
-- ARGV[3]  limit          most jobs moved in one call
-- ARGV[4]  status ttl     seconds
-- Returns: {moved, more} where more is 1 when due jobs were left for the next call

local t = redis.call('TIME')
local now_s = string.format('%d.%06d', t[1], t[2])
local limit = tonumber(ARGV[3])
local due = redis.call('ZRANGE', KEYS[1], '-inf', now_s, 'BYSCORE', 'LIMIT', 0, limit + 1)
local moved = 0
for i, raw in ipairs(due) do
  if i > limit then break end
  redis.call('ZREM', KEYS[1], raw)
  local ok, job = pcall(cjson.decode, raw)
  if not ok or type(job) ~= 'table' then
    redis.call('RPUSH', KEYS[3], 'malformed entry in ' .. KEYS[1] .. '\n' .. raw)
  else
    local queue = type(job['queue']) == 'string' and job['queue'] or 'default'
    local jid = type(job['jid']) == 'string' and job['jid'] or nil
    local skip = false
    if jid then
      local skey = ARGV[2] .. jid
      if redis.call('HGET', skey, 'state') == 'cancelled' then
        skip = true
        flow_event(skey, jid, 'cancelled', now_s)
      elseif redis.call('EXISTS', skey) == 1 then
        redis.call('HSET', skey, 'state', 'enqueued', 'enqueued_at', now_s, 'queue', queue)
        redis.call('EXPIRE', skey, tonumber(ARGV[4]))
      end
    end
    if not skip then
      redis.call('SADD', KEYS[2], queue)
      redis.call('LPUSH', ARGV[1] .. queue, stamp(raw, job, now_s))
      moved = moved + 1
    end
  end
end
local more = 0
if #due > limit then more = 1 end
return {moved, more}
