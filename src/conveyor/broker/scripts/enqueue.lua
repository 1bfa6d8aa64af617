-- enqueue.lua: push jobs to their queues (now) or to the schedule (later), with status records.
-- (Prefixed with _stamp.lua.)
--
-- KEYS[1]  queues            SET of queue names (Sidekiq)
-- KEYS[2]  schedule          ZSET raw job -> run time, epoch seconds (Sidekiq)
-- ARGV[1]  queue key prefix  string, e.g. "queue:" (namespace included)
-- ARGV[2]  status prefix     string, e.g. "conveyor:job:"; a job's status key is prefix..jid
-- ARGV[3]  status ttl        seconds
-- ARGV[4]  group count g     jobs come in groups of consecutive jobs that share a queue, a type,
--                            a time and whether they are unique
-- then for each group, a header of 5:
--          queue             queue name
--          class             job type
--          when              "" = now; "@<epoch s>" = at that time; "+<seconds>" = that long
--                            from now on the Redis clock
--          unique            "1": each job carries a unique lock; "0": none does
--          m                 job count of the group
-- followed by m jobs, each
--          jid               job id
--          raw               job JSON (immediate jobs already carry enqueued_at)
--          and when unique is "1":
--          unique key        full key of the job's unique lock
--          unique ttl        seconds the lock lives at most
--          unique scope      queued | running | completed: when the lock is released
-- Returns: {enqueued count, scheduled count, i1, jid1, i2, jid2, ...}: after the counts, each job
--          not pushed because its unique lock is held (1-based index in this call, counted
--          across groups) with the id of the job holding the lock
--
-- A group's jobs go to the queue in one SADD and variadic LPUSHes, or to the schedule in
-- variadic ZADDs, in their order; each job costs only its status record (HSET and EXPIRE).
-- Numbers handed to redis.call are strings: a Lua number would be formatted with printf on every
-- call (an eighth of a job's instructions in Redis). The first status record expires by EXPIRE;
-- the next ones by PEXPIREAT at the same moment, computed once, because Redis rewrites every
-- EXPIRE into a PEXPIREAT, which costs more per job than the computation costs per call. The
-- Redis clock is turned into a number only for a group with a time.
--
-- Status keys are built from ARGV[2] (not declared in KEYS): this script is for a single Redis
-- or Valkey server, like every Sidekiq-compatible key layout.

local UNPACK_MAX = 1000  -- arguments per variadic command: even (ZADD takes pairs), and well
                         -- under the C stack limit of Lua's unpack

local t = redis.call('TIME')
local now_s = t[1] .. '.' .. string.rep('0', 6 - #t[2]) .. t[2]  -- seconds, 6 decimals
local now = nil  -- as a number, when a group has a time
local qprefix, sprefix, ttl, groups = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local enqueued, scheduled, index = 0, 0, 0
local expire_at = nil  -- nil: no record yet; false: one; then the PEXPIREAT argument
local duplicates = {}

local function variadic(cmd, key, values)
  for i = 1, #values, UNPACK_MAX do
    redis.call(cmd, key, unpack(values, i, math.min(i + UNPACK_MAX - 1, #values)))
  end
end

local a = 5
for _ = 1, groups do
  local queue, class, when = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local unique, m = ARGV[a + 3] == '1', tonumber(ARGV[a + 4])
  a = a + 5
  local at, at_s, later = nil, nil, false
  if when ~= '' then
    now = now or tonumber(t[1]) + tonumber(t[2]) / 1000000
    local c = string.sub(when, 1, 1)
    if c == '@' then
      at = tonumber(string.sub(when, 2))
    elseif c == '+' then
      at = now + tonumber(string.sub(when, 2))
    end
    later = at ~= nil and at > now
    if later then at_s = string.format('%.6f', at) end
  end
  local out = {}  -- raws for the queue, or score/raw pairs for the schedule, in order
  for _ = 1, m do
    local jid, raw = ARGV[a], ARGV[a + 1]
    local ukey = unique and ARGV[a + 2] or ''
    local holder = ukey ~= '' and redis.call('GET', ukey)
    index = index + 1
    if holder then
      duplicates[#duplicates + 1] = index
      duplicates[#duplicates + 1] = holder
    else
      local skey = sprefix .. jid
      if later then
        out[#out + 1] = at_s
        out[#out + 1] = raw
        redis.call('HSET', skey, 'state', 'scheduled', 'class', class, 'queue', queue,
          'created_at', now_s, 'scheduled_at', at_s, 'attempts', '0')
        scheduled = scheduled + 1
      else
        if at ~= nil then
          -- scheduled for a time already past: it goes straight to the queue, so it needs the
          -- enqueued_at that Sidekiq's client or poller would give it (queue latency)
          raw = stamp(raw, nil, now_s)
        end
        out[#out + 1] = raw
        redis.call('HSET', skey, 'state', 'enqueued', 'class', class, 'queue', queue,
          'created_at', now_s, 'enqueued_at', now_s, 'attempts', '0')
        enqueued = enqueued + 1
      end
      if ukey ~= '' then
        redis.call('SET', ukey, jid, 'EX', ARGV[a + 3])
        redis.call('HSET', skey, 'unique_key', ukey, 'unique_scope', ARGV[a + 4])
      end
      if expire_at == nil then
        redis.call('EXPIRE', skey, ttl)
        expire_at = false
      else  -- the same moment in ms, computed at the second record
        expire_at = expire_at or string.format('%d', (tonumber(t[1]) + tonumber(ttl)) * 1000
          + math.floor(tonumber(t[2]) / 1000))
        redis.call('PEXPIREAT', skey, expire_at)
      end
    end
    a = a + (unique and 5 or 2)
  end
  if #out > 0 then
    if later then
      variadic('ZADD', KEYS[2], out)
    else
      redis.call('SADD', KEYS[1], queue)
      variadic('LPUSH', qprefix .. queue, out)
    end
  end
end
local reply = {enqueued, scheduled}
for _, v in ipairs(duplicates) do reply[#reply + 1] = v end
return reply
