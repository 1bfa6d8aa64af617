-- hand_back.lua: give a job this worker has no handler for back to the front of its queue,
-- byte for byte, for another kind of worker (a Ruby Sidekiq process) to take. Refused when the
-- fencing token is no longer in flight (the job was recovered meanwhile).
--
-- KEYS[1]  inflight       HASH token -> "<queue>\n<raw>" of this worker
-- KEYS[2]  queue          LIST the job came from
-- ARGV[1]  token          fencing token of the in-flight entry
-- Returns: 1 handed back, 0 refused (stale token)

local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
local nl = string.find(entry, '\n', 1, true)
-- RPUSH: the job keeps its place at the front, as Sidekiq's own requeue does
redis.call('RPUSH', KEYS[2], string.sub(entry, nl + 1))
return 1
