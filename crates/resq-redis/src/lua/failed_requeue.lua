-- Retry one failure: remove exactly this record and push its payload to the
-- tail of its queue, atomically, so two operators retrying at once enqueue the
-- job once.
--
-- KEYS[1] failed list  KEYS[2] resque:queues  KEYS[3] resque:queue:<q>
-- ARGV[1] the record  ARGV[2] queue name  ARGV[3] payload
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
