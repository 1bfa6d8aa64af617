-- _stamp.lua is not a script of its own: the broker prepends it to scripts that push an existing
-- job back into a queue. stamp(raw, job, now_s) returns raw with a fresh top-level enqueued_at,
-- changing no other byte: the value is replaced where the key is (last, as Conveyor writes it;
-- before the error fields, as Sidekiq's retry rewrite leaves it), appended when absent, and
-- left alone only when it is not a plain number.

-- The byte range of the number after the top-level "enqueued_at" key, or nil. Strings are
-- skipped whole, so a nested object or a string argument holding that text is never touched.
local function top_level_enqueued_at(raw)
  local depth, i = 0, 1
  while true do
    i = string.find(raw, '[{}%[%]"]', i)
    if not i then return nil end
    local c = string.sub(raw, i, i)
    if c == '"' then
      local j = i + 1
      while true do
        j = string.find(raw, '["\\]', j)
        if not j then return nil end
        if string.sub(raw, j, j) == '\\' then j = j + 2 else break end
      end
      if depth == 1 and string.sub(raw, i, j) == '"enqueued_at"' then
        local s, e = string.find(raw, '^%s*:%s*%-?[%d%.eE%+%-]+', j + 1)
        if not s then return nil end
        return string.find(raw, '%-?%d', s), e
      end
      i = j + 1
    else
      if c == '{' or c == '[' then depth = depth + 1 else depth = depth - 1 end
      i = i + 1
    end
  end
end

local function stamp(raw, job, now_s)
  local head = string.match(raw, '^(.*),"enqueued_at":[%d%.eE%+%-]+%s*}%s*$')
  if head then
    return head .. ',"enqueued_at":' .. now_s .. '}'
  end
  -- job is the decoded raw, or nil (or an error) when the caller did not decode it
  if type(job) ~= 'table' or job['enqueued_at'] ~= nil then
    local s, e = top_level_enqueued_at(raw)
    if s then
      return string.sub(raw, 1, s - 1) .. now_s .. string.sub(raw, e + 1)
    end
    if type(job) == 'table' then
      return raw
    end
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
