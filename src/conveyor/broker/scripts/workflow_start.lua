-- workflow_start.lua: store a workflow (chain, group, nested) and enqueue its first jobs, in one
-- step. Later steps are enqueued by ack/fail/fetch/promote/bury as jobs end (see _flow.lua).
-- (Prefixed with _stamp.lua and _flow.lua.)
--
-- KEYS[1]  workflow       HASH of the workflow (fields in _flow.lua and docs/workflows.md)
-- ARGV[1]  queue prefix   string, e.g. "queue:"
-- ARGV[2]  status prefix  string; a job's status key is prefix..jid
-- ARGV[3]  queues key     the SET of queue names
-- ARGV[4]  status ttl     seconds
-- ARGV[5]  workflow ttl   seconds the workflow record is kept once it has finished
-- ARGV[6..]               field, value pairs of its nodes; the root node is "0"
-- Returns: 1 started; 0 a workflow with this id exists already (nothing changed)

local wkey = KEYS[1]
if redis.call('EXISTS', wkey) == 1 then
  return 0
end
local t = redis.call('TIME')
local now_s = string.format('%d.%06d', t[1], t[2])
redis.call('HSET', wkey, 'state', 'active', 'root', '0', 'qprefix', ARGV[1], 'sprefix', ARGV[2],
  'queues', ARGV[3], 'sttl', ARGV[4], 'ttl', ARGV[5], 'created_at', now_s)
local chunk = {}
for i = 6, #ARGV do
  chunk[#chunk + 1] = ARGV[i]
  if #chunk == 1000 or i == #ARGV then
    redis.call('HSET', wkey, unpack(chunk))
    chunk = {}
  end
end
wf_start(wkey, '0', nil, now_s)
return 1
