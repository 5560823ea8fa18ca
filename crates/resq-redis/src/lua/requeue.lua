-- Put in-flight jobs back at the head of their queues, keeping their order.
-- A job is pushed back only if it was still in flight, so a job the reaper
-- already recovered is never duplicated.
--
-- KEYS pairs: resq:inflight:<id>:<q>, resque:queue:<q>
-- ARGV pairs, in fetch order: pair number, payload
local n = 0
for i = #ARGV - 1, 1, -2 do
  local p = tonumber(ARGV[i])
  if redis.call('LREM', KEYS[2 * p - 1], 1, ARGV[i + 1]) > 0 then
    redis.call('LPUSH', KEYS[2 * p], ARGV[i + 1])
    n = n + 1
  end
end
return n
