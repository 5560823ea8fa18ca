-- Remove every trace of a worker: resq's liveness and in-flight bookkeeping and
-- Resque's registry (workers set, heartbeat, :started, current job, its stats).
-- Unless forced, does nothing while the worker's liveness mark exists or the
-- fleet's renewals have not been continuous for a full liveness period.
--
-- KEYS[1] resq:alive:<id>  KEYS[2] resq:inflight-queues:<id>  KEYS[3] resq:workers
-- KEYS[4] resque:workers  KEYS[5] resque:workers:heartbeat  KEYS[6] resque:worker:<id>
-- KEYS[7] resque:worker:<id>:started  KEYS[8] stat:processed:<id>  KEYS[9] stat:failed:<id>
-- KEYS[10] resq:inflight-seq:<id>  KEYS[11] resq:beat  KEYS[12] resq:paused-workers
-- KEYS[13] resq:solo:<id>
-- ARGV[1] worker id  ARGV[2] "force" or ""  ARGV[3] the continuity needed (ms)
-- Returns 1 forgotten, 0 alive, -2 not judged yet.
if ARGV[2] ~= 'force' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
  end
  if not continuous(KEYS[11], ARGV[3]) then
    return -2
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[13])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[12], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
