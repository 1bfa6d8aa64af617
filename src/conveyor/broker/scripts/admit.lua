-- admit.lua: may this job start now? Checks its flow-control policies (circuit breaker,
-- concurrency limits, rate limits) in one atomic step and takes a slot from each only when all of
-- them allow it. On a refusal with a short wait the caller may hold the job and ask again; on a
-- longer one the job is deferred: moved from the worker's in-flight record to the schedule, not
-- failed and not counted as a retry, with the reason and the time it will be tried again.
--
-- KEYS[1]  leases         ZSET worker id -> lease expiry, ms (holders of lost workers are freed)
-- KEYS[2]  inflight       HASH token -> "<queue>\n<raw>" of this worker
-- KEYS[3]  schedule       ZSET raw -> run time, epoch seconds
-- ARGV[1]  holder         "<owner>|<id>": a worker id and fencing token, or a breaker user's id
-- ARGV[2]  holder ttl     ms a slot stays taken without its owner's lease; 0 = as long as the
--                         owner (a worker) holds a lease in KEYS[1]
-- ARGV[3]  token          fencing token of the in-flight entry; "" = never defer, only answer
-- ARGV[4]  jid            job id ("" when none)
-- ARGV[5]  status prefix  string; a job's status key is prefix..jid
-- ARGV[6]  status ttl     seconds
-- ARGV[7]  hold max       ms; a refusal whose wait is at most this long is answered, not deferred
-- ARGV[8]  jitter         a number in [0, 1) chosen by the caller; spreads rechecks
-- ARGV[9]  check count n
-- ARGV[10 + 7*i .. 16 + 7*i]  check i: kind, key, label, p1, p2, p3, p4
--   breaker      key = state HASH (companions key..':probes' ZSET, key..':events' LIST);
--                p1 half-open probes at once; p2 recheck ms when deferred; p3 poll ms when held
--   concurrency  key = holders ZSET; p1 limit; p2 recheck ms when deferred; p3 poll ms when held
--   window       key = admissions ZSET (sliding window log; companion key..':cursor');
--                p1 limit; p2 period ms
--   bucket       key = token bucket HASH tokens, ts (companion key..':cursor');
--                p1 limit (tokens per period); p2 period ms; p3 burst (bucket size)
-- Returns: {1, probe}              admitted (the status gets admitted_at, the Redis time);
--                                  probe = 1 when it took a half-open probe slot
--          {0, wait ms, reason}    refused with a short wait: hold the job and ask again
--          {-1, wait ms, reason}   refused and deferred to the schedule, to run in wait ms
--          {-2}                    the token is no longer in flight (the job was recovered)
--
-- A deferred job whose refusals are all rate limits gets a retry time spread by the key's cursor
-- (one limit interval apart), so a backlog comes back at the limit's pace instead of all at once.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = string.format('%d.%06d', t[1], t[2])
local holder, holder_ttl, token = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local hold_max, jitter, n = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])

local function alive(member, score)
  if score > now then return true end
  local owner = string.match(member, '^(.*)|[^|]*$')
  local lease = owner and redis.call('ZSCORE', KEYS[1], owner)
  return lease and tonumber(lease) > now
end

local function live_count(zkey)
  local items = redis.call('ZRANGE', zkey, 0, -1, 'WITHSCORES')
  for i = 1, #items, 2 do
    if not alive(items[i], tonumber(items[i + 1])) then redis.call('ZREM', zkey, items[i]) end
  end
  return redis.call('ZCARD', zkey)
end

local function set_breaker_state(key, state)
  redis.call('HSET', key, 'state', state)
  redis.call('LPUSH', key .. ':events', now .. ' ' .. state)
  redis.call('LTRIM', key .. ':events', 0, 99)
end

-- each check returns nil when it allows, or {hold wait ms, defer wait ms, is rate limit,
-- reason suffix}
local check = {}
local commit = {}

check.breaker = function(key, p)
  local h = redis.call('HMGET', key, 'state', 'open_until')
  local state = h[1] or 'closed'
  if state == 'open' then
    local until_ms = tonumber(h[2]) or 0
    if now < until_ms then
      return {until_ms - now, until_ms - now + math.floor(jitter * p[2]), false, ' is open'}
    end
    set_breaker_state(key, 'half-open')
    state = 'half-open'
  end
  if state == 'half-open' and live_count(key .. ':probes') >= p[1] then
    return {p[3], math.floor(p[2] * (1 + jitter)), false, ' is half-open (probing)'}
  end
  return nil
end
commit.breaker = function(key, p)
  if redis.call('HGET', key, 'state') == 'half-open' then
    redis.call('ZADD', key .. ':probes', holder_ttl > 0 and now + holder_ttl or 0, holder)
    return 1
  end
  return 0
end

check.concurrency = function(key, p)
  if live_count(key) >= p[1] then
    return {p[3], math.floor(p[2] * (1 + jitter)), false}
  end
  return nil
end
commit.concurrency = function(key, p)
  redis.call('ZADD', key, holder_ttl > 0 and now + holder_ttl or 0, holder)
  return 0
end

check.window = function(key, p)
  -- strict: an entry exactly one period old still counts, so with the clock floored to ms no
  -- real-time window of one period ever holds more than the limit
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (now - p[2]))
  local count = redis.call('ZCARD', key)
  if count < p[1] then return nil end
  -- the admission that must leave the window before one more fits
  local oldest = redis.call('ZRANGE', key, count - p[1], count - p[1], 'WITHSCORES')
  local wait = tonumber(oldest[2]) + p[2] - now + 1
  return {wait, wait, true}
end
commit.window = function(key, p)
  redis.call('ZADD', key, now, holder .. '@' .. now)
  redis.call('PEXPIRE', key, p[2] + 1000)
  return 0
end

local function bucket_tokens(key, p)
  local h = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(h[1]) or p[3]
  local elapsed = math.max(0, now - (tonumber(h[2]) or now))
  return math.min(p[3], tokens + elapsed * p[1] / p[2])
end
check.bucket = function(key, p)
  local tokens = bucket_tokens(key, p)
  if tokens >= 1 then return nil end
  local wait = math.ceil((1 - tokens) * p[2] / p[1])
  return {wait, wait, true}
end
commit.bucket = function(key, p)
  local tokens = bucket_tokens(key, p) - 1
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(p[3] * p[2] / p[1]) + 1000)
  return 0
end

local checks = {}
for i = 0, n - 1 do
  local b = 10 + 7 * i
  checks[#checks + 1] = {kind = ARGV[b], key = ARGV[b + 1], label = ARGV[b + 2],
    p = {tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])}}
end

local hold_wait, defer_wait, reason, only_rate = 0, 0, nil, true
local refused = {}
for _, c in ipairs(checks) do
  local r = check[c.kind](c.key, c.p)
  if r then
    refused[#refused + 1] = c
    hold_wait = math.max(hold_wait, r[1])
    defer_wait = math.max(defer_wait, r[2])
    only_rate = only_rate and r[3]
    reason = reason or (c.label .. (r[4] or ''))
  end
end

if not reason then
  local probe = 0
  for _, c in ipairs(checks) do probe = math.max(probe, commit[c.kind](c.key, c.p)) end
  if ARGV[4] ~= '' and redis.call('EXISTS', ARGV[5] .. ARGV[4]) == 1 then
    redis.call('HSET', ARGV[5] .. ARGV[4], 'admitted_at', now_s)
  end
  return {1, probe}
end
if token == '' or hold_wait <= hold_max then
  return {0, hold_wait, reason}
end

local entry = redis.call('HGET', KEYS[2], token)
if not entry then return {-2} end
if only_rate then
  local at = now + defer_wait
  for _, c in ipairs(refused) do
    at = math.max(at, tonumber(redis.call('GET', c.key .. ':cursor') or '0'))
  end
  for _, c in ipairs(refused) do
    local interval = math.ceil(c.p[2] / c.p[1])
    redis.call('SET', c.key .. ':cursor', at + interval, 'PX', at + interval - now + c.p[2])
  end
  defer_wait = at - now
end
redis.call('HDEL', KEYS[2], token)
local raw = string.sub(entry, string.find(entry, '\n', 1, true) + 1)
local run_at = string.format('%.3f', (now + defer_wait) / 1000)
redis.call('ZADD', KEYS[3], run_at, raw)
if ARGV[4] ~= '' then
  local skey = ARGV[5] .. ARGV[4]
  redis.call('HSET', skey, 'state', 'scheduled', 'scheduled_at', run_at, 'deferred_reason', reason,
    'deferred_at', now_s)
  redis.call('HDEL', skey, 'started_at', 'worker')
  redis.call('HINCRBY', skey, 'attempts', -1)
  redis.call('HINCRBY', skey, 'deferrals', 1)
  redis.call('EXPIRE', skey, tonumber(ARGV[6]))
end
return {-1, defer_wait, reason}
