-- Put in-flight jobs back at the head of their queues, keeping their order,
-- and release their claims. A job is pushed back only if it was still in
-- flight, so a job the reaper already recovered is never duplicated.
--
-- KEYS pairs: resq:inflight:<id>:<q> (hash), resque:queue:<q>
-- ARGV pairs, in fetch order: pair number, token
local n = 0
for i = #ARGV - 1, 1, -2 do
  local p = tonumber(ARGV[i])
  local flight, token = KEYS[2 * p - 1], ARGV[i + 1]
  local job = redis.call('HGET', flight, token)
  if job then
    release_claim(flight, token)
    redis.call('HDEL', flight, token)
    redis.call('LPUSH', KEYS[2 * p], job)
    n = n + 1
  end
end
return n
