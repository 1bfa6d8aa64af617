-- cancel.lua: mark a job cancelled unless it already finished. Queued and scheduled jobs are
-- then dropped when a worker or the scheduler meets them; a running job is stopped by its worker,
-- which watches the states of the jobs it runs.
--
-- KEYS[1]  status         HASH status record of the job
-- ARGV[1]  status ttl     seconds
-- Returns: the state before ("" when unknown); the job is cancelled unless that state was
--          completed, dead, failed or cancelled
-- A unique lock held by the job is released at once, whatever its scope. (A workflow step
-- ends when the cancelled job is dropped by fetch or promote, or stopped while running.)

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return ''
end
if state == 'completed' or state == 'dead' or state == 'failed' or state == 'cancelled' then
  return state
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'cancelled_at', string.format('%d.%06d', t[1], t[2]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
local lock = redis.call('HGET', KEYS[1], 'unique_key')
if lock then
  local owner = redis.call('GET', lock)
  -- the lock is this job's when the status key ends with ":<its jid>"
  if owner and string.sub(KEYS[1], -(#owner + 1)) == ':' .. owner then
    redis.call('DEL', lock)
  end
end
return state
