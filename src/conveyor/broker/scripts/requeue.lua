-- requeue.lua: move entries of a sorted set (dead, retry or schedule) to their queues now, by
-- their exact raw member, with a fresh enqueued_at. (Prefixed with _stamp.lua.)
--
-- KEYS[1]  source         ZSET (dead, retry or schedule)
-- KEYS[2]  queues         SET of queue names
-- ARGV[1]  queue prefix   string, e.g. "queue:"
-- ARGV[2]  status prefix  string; a job's status key is prefix..jid
-- ARGV[3]  status ttl     seconds
-- ARGV[4+] raw members    exact strings as stored
-- Returns: number of entries moved (members already gone are skipped)

local t = redis.call('TIME')
local now_s = string.format('%d.%06d', t[1], t[2])
local moved = 0
for i = 4, #ARGV do
  local raw = ARGV[i]
  if redis.call('ZREM', KEYS[1], raw) == 1 then
    local ok, job = pcall(cjson.decode, raw)
    local queue = 'default'
    if ok and type(job) == 'table' and type(job['queue']) == 'string' then queue = job['queue'] end
    if ok and type(job) == 'table' and type(job['jid']) == 'string' then
      local skey = ARGV[2] .. job['jid']
      local cls = type(job['class']) == 'string' and job['class'] or ''
      redis.call('HSET', skey, 'state', 'enqueued', 'enqueued_at', now_s, 'queue', queue,
        'class', cls)
      redis.call('EXPIRE', skey, tonumber(ARGV[3]))
    end
    redis.call('SADD', KEYS[2], queue)
    redis.call('LPUSH', ARGV[1] .. queue, stamp(raw, job, now_s))
    moved = moved + 1
  end
end
return moved
