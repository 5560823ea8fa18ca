-- Retry one failure: check the queue's cap, remove exactly this record (and
-- its index entry), release the job's replay mark (the operator decided to
-- run the spent attempt once more) and push its payload to the tail of its
-- queue, atomically, so two operators retrying at once enqueue the job once
-- and a full queue keeps the record.
--
-- KEYS[1] failed list  KEYS[2] resque:queues  KEYS[3] resque:queue:<q>
-- KEYS[4] resq:marks:<q>:<block> of the job's mark  KEYS[5] resq:failure-index
-- KEYS[6] resq:queue-caps
-- ARGV[1] the record  ARGV[2] queue name  ARGV[3] payload
-- ARGV[4] the mark's bit, or -1 for an unsigned job (no mark)
-- ARGV[5] the record's id, or ''  ARGV[6] wake channel
-- Returns {0} pushed, {1} gone, {2, queue, cap, length} queue full.
local cap = redis.call('HGET', KEYS[6], ARGV[2])
if cap then
  local length = redis.call('LLEN', KEYS[3])
  if length + 1 > tonumber(cap) then
    return {2, ARGV[2], tonumber(cap), length}
  end
end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return {1}
end
if ARGV[5] ~= '' then
  redis.call('HDEL', KEYS[5], ARGV[5])
end
if tonumber(ARGV[4]) >= 0 and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('SETBIT', KEYS[4], ARGV[4], 0)
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
pcall(redis.call, 'PUBLISH', ARGV[6], '')
return {0}
