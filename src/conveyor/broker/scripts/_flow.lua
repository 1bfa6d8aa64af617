-- _flow.lua is not a script of its own: the broker prepends it (after _stamp.lua) to the scripts
-- where a job starts or ends (fetch, ack, fail, promote, bury, cancel) and to workflow_start, so
-- that unique locks and workflow steps change in the same atomic step as the job itself. A crash
-- between "the job finished" and "its workflow moved on" is therefore impossible.
--
-- Both are found through fields of the job's status record (a job without them costs one HMGET):
--   unique_key, unique_scope  the full key of the job's unique lock (a STRING holding the jid
--                             of its owner) and when it is released: queued | running | completed
--   wf, wf_node               the workflow HASH key and the job's node id in it
--
-- flow_event(skey, jid, event, now_s, result, err_class, err_msg)
--   event: started | completed | retrying | dead | failed | cancelled
--
-- Workflow HASH fields (see docs/workflows.md): state, root, qprefix, sprefix, queues, sttl, ttl,
-- created_at, finished_at, result, outcome; and for node N: N.k kind (job|chain|group), N.p parent,
-- N.n next step (inside a chain), N.c children "a,b,c", N.cb callback node (group), N.left and
-- N.failed member counts (group), N.s state (pending|active|completed|failed), N.o outcome JSON;
-- job nodes also N.jid, N.cls, N.q, N.raw (the job without input) and N.pre / N.post (the job's
-- JSON around the place where the previous step's result goes, as its first argument).

local FLOW_RELEASE = {
  started = {queued = true},
  completed = {queued = true, running = true, completed = true},
  dead = {queued = true, running = true},
  failed = {queued = true, running = true},
  cancelled = {queued = true, running = true, completed = true},
}

local function unique_release(ukey, scope, jid, event)
  local when = FLOW_RELEASE[event]
  if when and when[scope] and redis.call('GET', ukey) == jid then
    redis.call('DEL', ukey)
  end
end

local wf_start, wf_finish

local function wf_field(wkey, id, name)
  return redis.call('HGET', wkey, id .. '.' .. name)
end

local function wf_children(wkey, id)
  local out = {}
  local c = wf_field(wkey, id, 'c')
  if c then
    for part in string.gmatch(c, '[^,]+') do out[#out + 1] = part end
  end
  return out
end

local function wf_enqueue(wkey, id, input, now_s)
  local f = redis.call('HMGET', wkey, id .. '.raw', id .. '.pre', id .. '.post', id .. '.q',
    id .. '.jid', id .. '.cls', 'qprefix', 'sprefix', 'queues', 'sttl')
  local raw = f[1]
  if input and f[2] then raw = f[2] .. input .. f[3] end
  redis.call('SADD', f[9], f[4])
  redis.call('LPUSH', f[7] .. f[4], stamp(raw, nil, now_s))
  local skey = f[8] .. f[5]
  redis.call('HSET', skey, 'state', 'enqueued', 'class', f[6], 'queue', f[4], 'created_at', now_s,
    'enqueued_at', now_s, 'attempts', 0, 'wf', wkey, 'wf_node', id)
  redis.call('EXPIRE', skey, tonumber(f[10]))
end

local function wf_group_done(wkey, gid, now_s)
  local kids = wf_children(wkey, gid)
  local parts = {}
  for i = 1, #kids, 500 do
    local fields = {}
    for j = i, math.min(i + 499, #kids) do fields[#fields + 1] = kids[j] .. '.o' end
    for _, v in ipairs(redis.call('HMGET', wkey, unpack(fields))) do
      parts[#parts + 1] = v or 'null'
    end
  end
  local list = '[' .. table.concat(parts, ',') .. ']'
  local cb = wf_field(wkey, gid, 'cb')
  if cb then
    wf_start(wkey, cb, list, now_s)
    return
  end
  local ok = tonumber(wf_field(wkey, gid, 'failed') or '0') == 0
  local state = ok and 'completed' or 'failed'
  wf_finish(wkey, gid, ok, list, '{"state":"' .. state .. '","result":' .. list .. '}', now_s)
end

wf_start = function(wkey, id, input, now_s)
  redis.call('HSET', wkey, id .. '.s', 'active')
  local kind = wf_field(wkey, id, 'k')
  if kind == 'job' then
    wf_enqueue(wkey, id, input, now_s)
  elseif kind == 'chain' then
    wf_start(wkey, wf_children(wkey, id)[1], input, now_s)
  else
    local kids = wf_children(wkey, id)
    redis.call('HSET', wkey, id .. '.left', #kids)
    for _, kid in ipairs(kids) do wf_start(wkey, kid, input, now_s) end
  end
end

-- A node ended: record it once, then move its parent on (next chain step, group count, callback).
wf_finish = function(wkey, id, ok, value, outcome, now_s)
  local st = wf_field(wkey, id, 's')
  if st == 'completed' or st == 'failed' then return end
  redis.call('HSET', wkey, id .. '.s', ok and 'completed' or 'failed', id .. '.o', outcome)
  local parent = wf_field(wkey, id, 'p')
  if not parent then
    redis.call('HSET', wkey, 'state', ok and 'completed' or 'failed', 'finished_at', now_s,
      'result', ok and value or '', 'outcome', outcome)
    redis.call('EXPIRE', wkey, tonumber(redis.call('HGET', wkey, 'ttl')))
    return
  end
  if wf_field(wkey, parent, 'k') == 'chain' then
    local nxt = wf_field(wkey, id, 'n')
    if ok and nxt then
      wf_start(wkey, nxt, value, now_s)
    else
      wf_finish(wkey, parent, ok, value, outcome, now_s)
    end
  elseif wf_field(wkey, parent, 'cb') == id then
    wf_finish(wkey, parent, ok, value, outcome, now_s)
  else
    if not ok then redis.call('HINCRBY', wkey, parent .. '.failed', 1) end
    if redis.call('HINCRBY', wkey, parent .. '.left', -1) == 0 then
      wf_group_done(wkey, parent, now_s)
    end
  end
end

local function flow_event(skey, jid, event, now_s, result, err_class, err_msg)
  local f = redis.call('HMGET', skey, 'unique_key', 'unique_scope', 'wf', 'wf_node')
  if f[1] then unique_release(f[1], f[2], jid, event) end
  if not f[3] or event == 'started' or event == 'retrying' then return end
  if redis.call('EXISTS', f[3]) == 0 then return end
  if event == 'completed' then
    local value = (result and result ~= '') and result or 'null'
    local outcome = '{"jid":"' .. jid .. '","state":"completed","result":' .. value .. '}'
    wf_finish(f[3], f[4], true, value, outcome, now_s)
  else
    local outcome = cjson.encode({jid = jid, state = event, error_class = err_class or '',
      error_message = err_msg or ''})
    wf_finish(f[3], f[4], false, nil, outcome, now_s)
  end
end
