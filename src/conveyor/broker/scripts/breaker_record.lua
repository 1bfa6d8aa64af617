-- breaker_record.lua: record the outcome of one call guarded by a circuit breaker and move the
-- breaker between closed, open and half-open. State is shared by every worker.
--
-- KEYS[1]  breaker        HASH state (closed|open|half-open), failures (consecutive), opened_at
--                         and open_until (ms), opened (times opened); companions:
--                         key..':window' HASH s<bucket>/f<bucket> call counts per time bucket,
--                         key..':probes' ZSET half-open probe holders, key..':events' LIST
-- KEYS[2]  breakers       SET of breaker names (for the admin views)
-- ARGV[1]  name           breaker name (added to KEYS[2])
-- ARGV[2]  outcome        "success" | "failure" | "neutral" (cancelled: frees its probe only)
-- ARGV[3]  probe          1 when the call was admitted as a half-open probe
-- ARGV[4]  holder         the probe holder to free ("" when none)
-- ARGV[5]  failures       consecutive failures that open the breaker (0 = not used)
-- ARGV[6]  failure rate   per mille of failed calls in the window that opens it (0 = not used)
-- ARGV[7]  min calls      calls in the window before the failure rate counts
-- ARGV[8]  window         ms
-- ARGV[9]  buckets        count the window is cut into
-- ARGV[10] open for       ms the breaker stays open before it lets probes through
-- Returns: the state after this call: "closed" | "open" | "half-open"
--
-- Closed: a failure counts; enough of them (in a row, or as a rate) open the breaker. Open:
-- outcomes of calls admitted before it opened change nothing. Half-open: a success closes it, a
-- failed probe opens it again.

local key = KEYS[1]
local outcome, probe, holder = ARGV[2], ARGV[3] == '1', ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SADD', KEYS[2], ARGV[1])
if holder ~= '' then redis.call('ZREM', key .. ':probes', holder) end

local function set_state(state)
  redis.call('HSET', key, 'state', state)
  redis.call('LPUSH', key .. ':events', now .. ' ' .. state)
  redis.call('LTRIM', key .. ':events', 0, 99)
end

local function open()
  set_state('open')
  redis.call('HSET', key, 'opened_at', now, 'open_until', now + tonumber(ARGV[10]), 'failures', 0)
  redis.call('HINCRBY', key, 'opened', 1)
  redis.call('DEL', key .. ':window')
end

local h = redis.call('HMGET', key, 'state', 'open_until')
local state = h[1] or 'closed'
if state == 'open' and now >= (tonumber(h[2]) or 0) then state = 'half-open' end
if outcome == 'neutral' then return state end

-- the failure-rate window: one pair of counters per bucket, older buckets dropped
local wkey = key .. ':window'
local bucket_ms = math.max(1, math.floor(tonumber(ARGV[8]) / tonumber(ARGV[9])))
local current = math.floor(now / bucket_ms)
local oldest = current - tonumber(ARGV[9]) + 1

if state == 'half-open' then
  if outcome == 'success' then
    set_state('closed')
    redis.call('HSET', key, 'failures', 0)
    redis.call('DEL', wkey)
  elseif probe then
    open()
  end
  return redis.call('HGET', key, 'state')
end
if state == 'open' then return state end

redis.call('HINCRBY', wkey, (outcome == 'success' and 's' or 'f') .. current, 1)
redis.call('PEXPIRE', wkey, tonumber(ARGV[8]) * 2)
local calls, failed = 0, 0
local w = redis.call('HGETALL', wkey)
for i = 1, #w, 2 do
  local idx = tonumber(string.sub(w[i], 2))
  if idx < oldest then
    redis.call('HDEL', wkey, w[i])
  else
    calls = calls + tonumber(w[i + 1])
    if string.sub(w[i], 1, 1) == 'f' then failed = failed + tonumber(w[i + 1]) end
  end
end
if outcome == 'success' then
  redis.call('HSET', key, 'failures', 0)
  return 'closed'
end
local failures = redis.call('HINCRBY', key, 'failures', 1)
local by_count = tonumber(ARGV[5]) > 0 and failures >= tonumber(ARGV[5])
local by_rate = tonumber(ARGV[6]) > 0 and calls >= tonumber(ARGV[7])
  and failed * 1000 >= tonumber(ARGV[6]) * calls
if by_count or by_rate then
  open()
  return 'open'
end
return 'closed'
