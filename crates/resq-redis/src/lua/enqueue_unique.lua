-- Enqueue a job with a uniqueness key, atomically: if the key is held (the
-- same job was enqueued within its window), nothing is stored and the holder's
-- job id is returned; otherwise the job is pushed (its queue's cap checked
-- too) and the key taken for the window. Two producers racing get one job.
--
-- KEYS[1] resq:unique:<class>:<key>  KEYS[2] resque:queues  KEYS[3] resque:queue:<q>
-- KEYS[4] resq:queue-caps
-- ARGV[1] job id  ARGV[2] window (ms)  ARGV[3] queue name  ARGV[4] job  ARGV[5] wake channel
-- Returns {0} stored, {1, existing id} duplicate, {2, queue, cap, length} queue full.
local existing = redis.call('GET', KEYS[1])
if existing then
  return {1, existing}
end
local full = push_one(KEYS[2], KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5])
if full then
  return {2, full[1], full[2], full[3]}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {0}
