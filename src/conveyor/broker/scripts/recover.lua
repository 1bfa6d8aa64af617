-- recover.lua: requeue the in-flight jobs of workers whose lease expired (or of one worker that is
-- exiting and hands its jobs back). Jobs lost too often go to quarantine, to be buried as dead.
-- (Prefixed with _stamp.lua.)
--
-- KEYS[1]  leases         ZSET worker id -> lease expiry, ms on the Redis clock
-- KEYS[2]  workers        SET of worker ids with state in Redis
-- KEYS[3]  queues         SET of queue names
-- KEYS[4]  quarantine     LIST "<reason>\n<raw>" for the worker to bury in the dead set
-- KEYS[5]  worker info    HASH worker id -> JSON {"queues": [...], ...} (finds claim lists)
-- ARGV[1]  mode           "expired" (every expired lease, counts recoveries) or "release"
-- ARGV[2]  worker id      the exiting worker (release mode)
-- ARGV[3]  own prefix     string, e.g. "conveyor:" (inflight:, claim:, recoveries:, job: below it)
-- ARGV[4]  queue prefix   string, e.g. "queue:"
-- ARGV[5]  max recoveries count; above it a job is quarantined with reason "worker lost"
-- ARGV[6]  recoveries ttl seconds a recovery count is remembered
-- ARGV[7]  status ttl     seconds
-- ARGV[8]  max workers    most expired workers handled in one call
-- ARGV[9]  spread ms      a job lost twice or more comes back within this, not at once
-- KEYS[6]  suspects       ZSET "<queue>\n<raw>" -> ms on the Redis clock (such a job's turn)
-- Returns: {workers recovered, jobs requeued, jobs quarantined}
--
-- Blame: only jobs that were running (in the in-flight hash) count a loss; jobs merely claimed
-- (waiting in a claim list) go back uncounted. A job whose worker died while it ran with others
-- shares the blame with them, and a poison pill recovered at the front of the queue would be
-- fetched again with the same companions, so a second loss would be counted for all of them
-- again. From its second loss on, a job therefore waits in the suspects set until its own offset
-- within the spread (a golden-ratio sequence over the call's suspects), so the suspects of one
-- crash run apart and an innocent one stops dying with the pill (issue 9, scenario 7). Every
-- call first moves the suspects whose turn has come to the *front* of their queue (a recovered
-- job must not wait behind the backlog, as a scheduled job would).

local mode, own, qprefix = ARGV[1], ARGV[3], ARGV[4]
local max_rec, rec_ttl, sttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = string.format('%d.%06d', t[1], t[2])
local count_recovery = (mode == 'expired')
local spread_ms = tonumber(ARGV[9])
local SPREAD_FROM = 2  -- the loss from which a job comes back spread out
local GOLDEN = 0.6180339887
local suspects = 0

local wids
if mode == 'expired' then
  wids = redis.call('ZRANGE', KEYS[1], '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[8]))
  -- a worker with state but no lease at all (fenced, then died before registering again)
  for _, wid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if not redis.call('ZSCORE', KEYS[1], wid) then wids[#wids + 1] = wid end
  end
else
  wids = {ARGV[2]}
end

local requeued, quarantined = 0, 0

-- the job goes back to the front of its queue (RPUSH, as Sidekiq's requeue does), enqueued again
local function to_front(queue, raw, job, jid)
  if jid then
    local skey = own .. 'job:' .. jid
    if redis.call('EXISTS', skey) == 1 then
      redis.call('HSET', skey, 'state', 'enqueued', 'enqueued_at', now_s)
      redis.call('EXPIRE', skey, sttl)
    end
  end
  redis.call('SADD', KEYS[3], queue)
  redis.call('RPUSH', qprefix .. queue, stamp(raw, job, now_s))
end

-- suspects whose turn has come go to the front of their queue
for _, entry in ipairs(redis.call('ZRANGE', KEYS[6], '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[6], entry)
  local nl = string.find(entry, '\n', 1, true)
  local queue, raw = string.sub(entry, 1, nl - 1), string.sub(entry, nl + 1)
  local ok, job = pcall(cjson.decode, raw)
  local jid = nil
  if ok and type(job) == 'table' and type(job['jid']) == 'string' then jid = job['jid'] end
  to_front(queue, raw, job, jid)
end

local function give_back(queue, raw, running)
  local ok, job = pcall(cjson.decode, raw)
  local jid = nil
  if ok and type(job) == 'table' and type(job['jid']) == 'string' then jid = job['jid'] end
  local later_s = nil
  if count_recovery and running and jid then
    local rkey = own .. 'recoveries:' .. jid
    local n = redis.call('INCR', rkey)
    redis.call('EXPIRE', rkey, rec_ttl)
    if n > max_rec then
      redis.call('RPUSH', KEYS[4], 'worker lost ' .. n .. ' times\n' .. raw)
      quarantined = quarantined + 1
      return
    end
    if n >= SPREAD_FROM and spread_ms > 0 then
      local offset = (suspects * GOLDEN + tonumber(t[2]) / 1000000) % 1
      suspects = suspects + 1
      later_s = (now_ms + math.floor(offset * spread_ms)) / 1000
    end
  end
  if later_s then
    if jid then
      local skey = own .. 'job:' .. jid
      if redis.call('EXISTS', skey) == 1 then
        redis.call('HSET', skey, 'state', 'scheduled', 'scheduled_at', string.format('%.3f', later_s))
        redis.call('EXPIRE', skey, sttl)
      end
    end
    redis.call('ZADD', KEYS[6], math.floor(later_s * 1000), queue .. '\n' .. raw)
    requeued = requeued + 1
    return
  end
  to_front(queue, raw, job, jid)
  requeued = requeued + 1
end

for _, wid in ipairs(wids) do
  local inflight = own .. 'inflight:' .. wid
  local entries = redis.call('HGETALL', inflight)
  for i = 2, #entries, 2 do
    local entry = entries[i]
    local nl = string.find(entry, '\n', 1, true)
    give_back(string.sub(entry, 1, nl - 1), string.sub(entry, nl + 1), true)
  end
  redis.call('DEL', inflight)
  -- claim lists: own..'claim:'..wid..':'..queue, for each queue named in the worker's info
  local claims = {}
  local info_raw = redis.call('HGET', KEYS[5], wid)
  if info_raw then
    local ok, info = pcall(cjson.decode, info_raw)
    if ok and type(info) == 'table' and type(info['queues']) == 'table' then
      for _, q in ipairs(info['queues']) do
        claims[#claims + 1] = own .. 'claim:' .. wid .. ':' .. q
      end
    end
  end
  local cprefix_len = string.len(own .. 'claim:' .. wid .. ':')
  for _, ckey in ipairs(claims) do
    local queue = string.sub(ckey, cprefix_len + 1)
    local items = redis.call('LRANGE', ckey, 0, -1)
    -- the list's tail is its oldest item; hand back oldest last so it ends up first in line
    for k = 1, #items do give_back(queue, items[k], false) end
    redis.call('DEL', ckey)
  end
  redis.call('ZREM', KEYS[1], wid)
  redis.call('SREM', KEYS[2], wid)
  redis.call('HDEL', KEYS[5], wid)
end
return {#wids, requeued, quarantined}
