-- fetch.lua: take up to N jobs for a worker, atomically into its in-flight record under its lease.
--
-- KEYS[1]  leases         ZSET worker id -> lease expiry, ms on the Redis clock
-- KEYS[2]  inflight       HASH fencing token -> "<queue>\n<raw job>" for this worker
-- KEYS[3]  token          STRING counter of fencing tokens
-- KEYS[4]  paused         SET of paused queue names
-- KEYS[5 + 2*i], KEYS[6 + 2*i]   for queue i in fetch order: the queue LIST and this worker's
--                                claim LIST for it (jobs a blocked BLMOVE already moved here)
-- ARGV[1]  worker id
-- ARGV[2]  max jobs       count (the worker's free slots)
-- ARGV[3]  lease ttl      ms
-- ARGV[4]  status prefix  string; a job's status key is prefix..jid
-- ARGV[5]  status ttl     seconds
-- ARGV[6 + i]             queue i's name
-- Returns: {-1} when this worker holds no lease (it was presumed dead: re-register, then fetch);
--          {} when no job was taken; otherwise {t, queue_a, n_a, raw..., queue_b, n_b, raw...}:
--          runs of jobs of one queue, each its queue name, its count and its raw jobs; the jobs'
--          fencing tokens are t+1, t+2, ... in reply order. (Three times fewer reply elements
--          than a token and a queue per job: parsing the reply is on the worker's hot path.)
--
-- A job whose status says "cancelled" is dropped here instead of being handed out.
-- Jobs are taken from the claim lists first, then from the queues in the given order.
-- (Prefixed with _stamp.lua and _flow.lua: a started job releases a unique lock held while
-- queued; a dropped cancelled job ends its workflow step.)

local wid, want, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local sprefix, ttl = ARGV[4], tonumber(ARGV[5])
if not redis.call('ZSCORE', KEYS[1], wid) then
  return {-1}
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = string.format('%d.%06d', t[1], t[2])
redis.call('ZADD', KEYS[1], now_ms + lease_ms, wid)

local INFLIGHT_CHUNK = 500  -- jobs per HSET: keeps unpack() far below Lua's stack limit
local out = {0}  -- out[1]: the token before the first job's, set at the end
local queues, raws = {}, {}  -- per job taken, for the in-flight record
local run_queue, run_count_at = nil, 0
local taken = 0
local nqueues = (#KEYS - 4) / 2

-- The jid without decoding the job, where Conveyor wrote it: a job's last members are
-- ,"jid":"<id>","created_at":<n>,"enqueued_at":<n>} (client.py). In valid JSON a ," cannot be
-- inside a string, so that tail is made of top-level members. Other jobs are decoded.
local TAIL_MAX = 200  -- bytes from the end where that tail starts, at most
local function tail_jid(raw)
  local at = string.find(raw, ',"jid":"', math.max(1, #raw - TAIL_MAX), true)
  if at then
    return string.match(raw,
      '^,"jid":"([^"\\]+)","created_at":[%d%.eE%+%-]+,"enqueued_at":[%d%.eE%+%-]+}$', at)
  end
end

local function decoded(raw)
  local ok, job = pcall(cjson.decode, raw)
  if ok and type(job) == 'table' then return job end
end

local function take(queue, raw)
  local job = nil
  local jid = tail_jid(raw)
  if not jid then
    job = decoded(raw)
    jid = job and type(job['jid']) == 'string' and job['jid'] or nil
  end
  if jid then
    local skey = sprefix .. jid
    -- one read for the cancelled check, the attempt count and the unique lock (what
    -- flow_event(skey, jid, 'started') would read)
    local f = redis.call('HMGET', skey, 'state', 'attempts', 'unique_key', 'unique_scope')
    if f[1] == 'cancelled' then
      redis.call('HSET', skey, 'finished_at', now_s)
      flow_event(skey, jid, 'cancelled', now_s)
      return
    end
    local attempts = (tonumber(f[2]) or 0) + 1
    if f[1] then  -- the record has the job's class
      redis.call('HSET', skey, 'state', 'active', 'started_at', now_s, 'worker', wid,
        'queue', queue, 'attempts', attempts)
    else  -- a job enqueued without one (by Sidekiq): the record starts here
      job = job or decoded(raw)
      local cls = job and type(job['class']) == 'string' and job['class'] or ''
      redis.call('HSET', skey, 'state', 'active', 'started_at', now_s, 'worker', wid,
        'queue', queue, 'class', cls, 'attempts', attempts)
    end
    redis.call('EXPIRE', skey, ttl)
    if f[3] then unique_release(f[3], f[4], jid, 'started') end
  end
  if queue ~= run_queue then
    out[#out + 1] = queue
    out[#out + 1] = 0
    run_queue, run_count_at = queue, #out
  end
  out[run_count_at] = out[run_count_at] + 1
  out[#out + 1] = raw
  taken = taken + 1
  queues[taken], raws[taken] = queue, raw
end

-- claimed jobs first: they already left their queue for this worker
for i = 0, nqueues - 1 do
  local claim = KEYS[6 + 2 * i]
  while taken < want do
    local raw = redis.call('RPOP', claim)
    if not raw then break end
    take(ARGV[6 + i], raw)
  end
end

for i = 0, nqueues - 1 do
  if taken >= want then break end
  local queue = ARGV[6 + i]
  if redis.call('SISMEMBER', KEYS[4], queue) == 0 then
    local items = redis.call('RPOP', KEYS[5 + 2 * i], want - taken)
    if items then
      for _, raw in ipairs(items) do
        take(queue, raw)
      end
    end
  end
end

-- One INCRBY and one HSET per INFLIGHT_CHUNK jobs instead of an INCR and an HSET per job; the
-- tokens are the same consecutive numbers the per-job INCRs gave.
if taken == 0 then
  return {}
end
local token = redis.call('INCRBY', KEYS[3], taken) - taken
out[1] = token
local fields = {}
for i = 1, taken do
  fields[#fields + 1] = token + i
  fields[#fields + 1] = queues[i] .. '\n' .. raws[i]
  if #fields >= 2 * INFLIGHT_CHUNK then
    redis.call('HSET', KEYS[2], unpack(fields))
    fields = {}
  end
end
if #fields > 0 then
  redis.call('HSET', KEYS[2], unpack(fields))
end
return out
