-- _stamp.lua is not a script of its own: the broker prepends it to scripts that push an existing
-- job back into a queue. stamp(raw, job, now_s) returns raw with a fresh top-level enqueued_at,
-- changing no other byte: the field is replaced when it is the last key (as Conveyor and Ruby
-- write it), appended when absent, and left alone (stale) in the rare other cases.
local function stamp(raw, job, now_s)
  local head = string.match(raw, '^(.*),"enqueued_at":[%d%.eE%+%-]+%s*}%s*$')
  if head then
    return head .. ',"enqueued_at":' .. now_s .. '}'
  end
  if type(job) == 'table' and job['enqueued_at'] ~= nil then
    return raw
  end
  local body = string.match(raw, '^(.*)}%s*$')
  if not body then
    return raw
  end
  if string.match(body, '^%s*{%s*$') then
    return '{"enqueued_at":' .. now_s .. '}'
  end
  return body .. ',"enqueued_at":' .. now_s .. '}'
end
