-- Put in-flight jobs back at the head of their queues, keeping their order.
-- A job is pushed back only if it was still in flight, so a job the reaper
-- already recovered is never duplicated.
--
-- KEYS pairs: resq:inflight:<id>:<q> (hash), resque:queue:<q>
-- ARGV pairs, in fetch order: pair number, token
local n = 0
for i = #ARGV - 1, 1, -2 do
  local p = tonumber(ARGV[i])
  local job = redis.call('HGET', KEYS[2 * p - 1], ARGV[i + 1])
  if job then
    redis.call('HDEL', KEYS[2 * p - 1], ARGV[i + 1])
    redis.call('LPUSH', KEYS[2 * p], job)
    n = n + 1
  end
end
return n
