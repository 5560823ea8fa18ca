-- Recover one in-flight list of a worker that is gone: move every job back to
-- the head of its queue, in the order it was fetched. Unless forced (the
-- worker unregistering itself), nothing moves while the worker's liveness mark
-- exists, so a worker that came back keeps its jobs.
--
-- KEYS[1] resq:alive:<id>  KEYS[2] resq:inflight:<id>:<q>  KEYS[3] resque:queue:<q>
-- ARGV[1] "force" or ""
if ARGV[1] ~= 'force' and redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do
  n = n + 1
end
return n
