-- Retry one failure: remove exactly this record, release the job's replay
-- mark (the operator decided to run the spent attempt once more) and push
-- its payload to the tail of its queue, atomically, so two operators
-- retrying at once enqueue the job once.
--
-- KEYS[1] failed list  KEYS[2] resque:queues  KEYS[3] resque:queue:<q>
-- KEYS[4] resq:marks:<q>:<block> of the job's mark
-- ARGV[1] the record  ARGV[2] queue name  ARGV[3] payload
-- ARGV[4] the mark's bit, or -1 for an unsigned job (no mark)
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
if tonumber(ARGV[4]) >= 0 and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('SETBIT', KEYS[4], ARGV[4], 0)
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
