-- enqueue.lua: push jobs to their queues (now) or to the schedule (later), with status records.
-- (Prefixed with _stamp.lua.)
--
-- KEYS[1]  queues            SET of queue names (Sidekiq)
-- KEYS[2]  schedule          ZSET raw job -> run time, epoch seconds (Sidekiq)
-- ARGV[1]  queue key prefix  string, e.g. "queue:" (namespace included)
-- ARGV[2]  status prefix     string, e.g. "conveyor:job:"; a job's status key is prefix..jid
-- ARGV[3]  status ttl        seconds
-- ARGV[4]  job count n
-- ARGV[5 + 8*i .. 12 + 8*i]  for job i (0-based):
--          queue             queue name
--          raw               job JSON (immediate jobs already carry enqueued_at)
--          jid               job id
--          class             job type
--          when              "" = now; "@<epoch s>" = at that time; "+<seconds>" = that long
--                            from now on the Redis clock
--          unique key        full key of the job's unique lock ("" = not unique)
--          unique ttl        seconds the lock lives at most
--          unique scope      queued | running | completed: when the lock is released
-- Returns: {enqueued count, scheduled count, i1, jid1, i2, jid2, ...}: after the counts, each job
--          not pushed because its unique lock is held (1-based index in this call) with the id
--          of the job holding the lock
--
-- Status keys are built from ARGV[2] (not declared in KEYS): this script is for a single Redis
-- or Valkey server, like every Sidekiq-compatible key layout.

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local now_s = string.format('%d.%06d', t[1], t[2])
local qprefix, sprefix, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local enqueued, scheduled = 0, 0
local duplicates = {}

for i = 0, n - 1 do
  local base = 5 + 8 * i
  local queue, raw, jid, class, when = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  local ukey = ARGV[base + 5]
  local holder = ukey ~= '' and redis.call('GET', ukey)
  local skey = sprefix .. jid
  local at = nil
  if string.sub(when, 1, 1) == '@' then
    at = tonumber(string.sub(when, 2))
  elseif string.sub(when, 1, 1) == '+' then
    at = now + tonumber(string.sub(when, 2))
  end
  if holder then
    duplicates[#duplicates + 1] = i + 1
    duplicates[#duplicates + 1] = holder
  elseif at ~= nil and at > now then
    redis.call('ZADD', KEYS[2], string.format('%.6f', at), raw)
    redis.call('HSET', skey, 'state', 'scheduled', 'class', class, 'queue', queue,
      'created_at', now_s, 'scheduled_at', string.format('%.6f', at), 'attempts', 0)
    scheduled = scheduled + 1
  else
    redis.call('SADD', KEYS[1], queue)
    if at ~= nil then
      -- scheduled for a time already past: it goes straight to the queue, so it needs the
      -- enqueued_at that Sidekiq's client or poller would give it (queue latency)
      raw = stamp(raw, nil, now_s)
    end
    redis.call('LPUSH', qprefix .. queue, raw)
    redis.call('HSET', skey, 'state', 'enqueued', 'class', class, 'queue', queue,
      'created_at', now_s, 'enqueued_at', now_s, 'attempts', 0)
    enqueued = enqueued + 1
  end
  if ukey ~= '' and not holder then
    redis.call('SET', ukey, jid, 'EX', tonumber(ARGV[base + 6]))
    redis.call('HSET', skey, 'unique_key', ukey, 'unique_scope', ARGV[base + 7])
  end
  redis.call('EXPIRE', skey, ttl)
end
local reply = {enqueued, scheduled}
for _, v in ipairs(duplicates) do reply[#reply + 1] = v end
return reply
