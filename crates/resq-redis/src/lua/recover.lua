-- Recover one in-flight hash of a worker that is gone: its claims are
-- released and every job goes back to the head of its queue, in the order
-- it was fetched (by token). Unless forced (the worker unregistering
-- itself), nothing moves while the worker's liveness mark exists, nor while
-- the fleet's renewals have not been continuous for a full liveness period
-- (after an outage, a lapsed mark proves nothing).
--
-- KEYS[1] resq:alive:<id>  KEYS[2] resq:inflight:<id>:<q>  KEYS[3] resque:queue:<q>
-- KEYS[4] resq:beat (since when the fleet renewed without a gap)
-- ARGV[1] "force" or ""  ARGV[2] the continuity needed (ms)
-- Returns the number of jobs requeued, -1 alive, -2 not judged yet.
if ARGV[1] ~= 'force' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return -1
  end
  if not continuous(KEYS[4], ARGV[2]) then
    return -2
  end
end
local flat = redis.call('HGETALL', KEYS[2])
local jobs = {}
for i = 1, #flat, 2 do
  local token = tonumber(flat[i])
  if token then
    release_claim(KEYS[2], flat[i])
    jobs[#jobs + 1] = {token, flat[i + 1]}
  end
end
table.sort(jobs, function(a, b) return a[1] < b[1] end)
-- Newest first onto the head, so the oldest ends up first in line.
for i = #jobs, 1, -1 do
  redis.call('LPUSH', KEYS[3], jobs[i][2])
end
redis.call('DEL', KEYS[2])
return #jobs
