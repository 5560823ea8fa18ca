-- Enqueue a job with a uniqueness key, atomically: if the key is held (the
-- same job was enqueued within its window), nothing is stored and the holder's
-- job id is returned; otherwise the key is taken for the window and the job is
-- pushed (its queue's cap checked too). Two producers racing get one job.
--
-- KEYS[1] resq:unique:<class>:<key>  KEYS[2] resque:queues  KEYS[3] resque:queue:<q>
-- KEYS[4] resq:queue-caps
-- ARGV[1] job id  ARGV[2] window (ms)  ARGV[3] queue name  ARGV[4] job  ARGV[5] wake channel
-- Returns {0} stored, {1, existing id} duplicate, {2, queue, cap, length} queue full.
local existing = redis.call('GET', KEYS[1])
if existing then
  return {1, existing}
end
local cap = redis.call('HGET', KEYS[4], ARGV[3])
if cap then
  local length = redis.call('LLEN', KEYS[3])
  if length + 1 > tonumber(cap) then
    return {2, ARGV[3], tonumber(cap), length}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[4])
pcall(redis.call, 'PUBLISH', ARGV[5], '')
return {0}
