-- Run one waiting job now: push exactly this member of a schedule (jobs
-- enqueued for later, or retries) to the tail of its queue, the queue's cap
-- checked, and take it out of the schedule, atomically (two operators at
-- once push it once; a full queue leaves it where it was).
--
-- KEYS[1] the schedule (sorted set)  KEYS[2] resque:queues  KEYS[3] resque:queue:<q>
-- KEYS[4] resq:queue-caps
-- ARGV[1] the member  ARGV[2] queue name  ARGV[3] wake channel
-- Returns {0} pushed, {1} gone, {2, queue, cap, length} queue full.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return {1}
end
local full = push_one(KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[1], ARGV[3])
if full then
  return {2, full[1], full[2], full[3]}
end
redis.call('ZREM', KEYS[1], ARGV[1])
return {0}
