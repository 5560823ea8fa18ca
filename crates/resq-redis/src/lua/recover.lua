-- Recover one in-flight hash of a worker that is gone: every job goes back to
-- the head of its queue, in the order it was fetched (by token). Unless forced
-- (the worker unregistering itself), nothing moves while the worker's liveness
-- mark exists, so a worker that came back keeps its jobs.
--
-- KEYS[1] resq:alive:<id>  KEYS[2] resq:inflight:<id>:<q>  KEYS[3] resque:queue:<q>
-- ARGV[1] "force" or ""
if ARGV[1] ~= 'force' and redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
local flat = redis.call('HGETALL', KEYS[2])
local jobs = {}
for i = 1, #flat, 2 do
  jobs[#jobs + 1] = {tonumber(flat[i]), flat[i + 1]}
end
table.sort(jobs, function(a, b) return a[1] < b[1] end)
-- Newest first onto the head, so the oldest ends up first in line.
for i = #jobs, 1, -1 do
  redis.call('LPUSH', KEYS[3], jobs[i][2])
end
redis.call('DEL', KEYS[2])
return #jobs
