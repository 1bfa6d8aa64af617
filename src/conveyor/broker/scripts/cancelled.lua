-- cancelled.lua: which of a worker's running jobs were cancelled (asked on every heartbeat).
--
-- No KEYS: the status keys are built from the prefix, as in fetch.lua.
-- ARGV[1]       status prefix  string; a job's status key is prefix..jid
-- ARGV[2 .. n]  jids of the running jobs
-- Returns: array of the jids whose status state is "cancelled" (usually empty)
--
-- One call for any number of jobs, instead of one HGET each: at 10,000 jobs in flight the
-- heartbeat thread spent more time packing HGETs than the event loop spent on a job.

local prefix = ARGV[1]
local out = {}
for i = 2, #ARGV do
  if redis.call('HGET', prefix .. ARGV[i], 'state') == 'cancelled' then
    out[#out + 1] = ARGV[i]
  end
end
return out
