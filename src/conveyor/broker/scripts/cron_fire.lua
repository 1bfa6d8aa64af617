-- cron_fire.lua: fire one slot of a periodic job exactly once, however many schedulers try it and
-- whichever of them crash: the entry's last fired slot is compared and set in the same atomic step
-- as the enqueue, and slots only move forward. (Prefixed with _stamp.lua.)
--
-- KEYS[1]  cron last      HASH entry name -> last fired slot, ms since the epoch
-- KEYS[2]  queues         SET of queue names
-- ARGV[1]  entry name
-- ARGV[2]  mode           "init": remember ARGV[3] as fired unless the entry has a slot already
--                         (a new entry starts with the next slot); "fire": fire ARGV[3]
-- ARGV[3]  slot           ms since the epoch
-- ARGV[4]  queue prefix   string, e.g. "queue:"
-- ARGV[5]  status prefix  string; a job's status key is prefix..jid
-- ARGV[6]  status ttl     seconds
-- ARGV[7]  queue          queue name (fire)
-- ARGV[8]  raw            job JSON, enqueued_at last (fire; stamped with the Redis time here)
-- ARGV[9]  jid            job id (fire)
-- ARGV[10] class          job type (fire)
-- Returns: 1 fired (or initialised); 0 that slot (or a later one) was fired already

local name, mode, slot = ARGV[1], ARGV[2], tonumber(ARGV[3])
if mode == 'init' then
  return redis.call('HSETNX', KEYS[1], name, ARGV[3])
end
local last = tonumber(redis.call('HGET', KEYS[1], name) or '-1')
if slot <= last then
  return 0
end
local t = redis.call('TIME')
local now_s = string.format('%d.%06d', t[1], t[2])
redis.call('HSET', KEYS[1], name, ARGV[3])
local queue = ARGV[7]
redis.call('SADD', KEYS[2], queue)
redis.call('LPUSH', ARGV[4] .. queue, stamp(ARGV[8], nil, now_s))
local skey = ARGV[5] .. ARGV[9]
redis.call('HSET', skey, 'state', 'enqueued', 'class', ARGV[10], 'queue', queue,
  'created_at', now_s, 'enqueued_at', now_s, 'attempts', 0, 'cron', name, 'cron_slot', ARGV[3])
redis.call('EXPIRE', skey, tonumber(ARGV[6]))
return 1
