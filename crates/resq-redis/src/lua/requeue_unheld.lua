-- Put back the jobs of one in-flight hash that its worker does not hold (a
-- fetch whose reply was lost): in fetch order (by token) to the head of
-- their queue, claims released; a suspect's solo mark goes with it.
--
-- KEYS[1] resq:inflight:<id>:<q>  KEYS[2] resque:queue:<q>  KEYS[3] resq:solo:<id>
-- KEYS[4] resq:inflight-batch:<id>:<q> (the prefix of its batches' lists)
-- ARGV: the tokens the worker holds
-- Returns how many went back.
local held = {}
for _, token in ipairs(ARGV) do
  held[token] = true
end
local solo = redis.call('GET', KEYS[3])
local solo_token = solo and string.sub(solo, 1, (string.find(solo, ' ', 1, true) or 1) - 1)
local back = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local token = tonumber(field)
  if token and not held[field] then
    back[#back + 1] = {token, field}
  end
end
table.sort(back, function(a, b) return a[1] < b[1] end)
for i = #back, 1, -1 do
  local field = back[i][2]
  local first = redis.call('HGET', KEYS[1], field)
  local job = first and inflight_job(KEYS[4], field, first)
  release_claim(KEYS[1], field)
  redis.call('HDEL', KEYS[1], field)
  if job then
    redis.call('LPUSH', KEYS[2], job)
  end
  if first then
    inflight_gone(KEYS[1], KEYS[4], first, {field})
  end
  if field == solo_token then
    redis.call('DEL', KEYS[3])
  end
end
return #back
