-- Move due jobs from the schedule and retry sets to the tail of their queues.
-- Atomic, so any number of workers may run it at once: a job moves once.
-- A member whose payload names no usable queue goes to the failed list.
--
-- KEYS[1] resq:schedule  KEYS[2] resq:retry  KEYS[3] resque:queues  KEYS[4] resque:failed
-- ARGV[1] now (unix ms)  ARGV[2] most jobs to move  ARGV[3] queue key prefix ("resque:queue:")
-- ARGV[4] failed_at text for refused members
-- Queue keys are built here from the payload's queue: this script assumes
-- one Redis, not a cluster.
local moved = 0
local limit = tonumber(ARGV[2])
for k = 1, 2 do
  if moved >= limit then break end
  local due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'LIMIT', 0, limit - moved)
  for _, job in ipairs(due) do
    redis.call('ZREM', KEYS[k], job)
    local ok, envelope = pcall(cjson.decode, job)
    local queue = ok and type(envelope) == 'table' and envelope['queue'] or nil
    if type(queue) == 'string' and string.match(queue, '^[%w_%.%-]+$') and #queue <= 128 then
      redis.call('SADD', KEYS[3], queue)
      redis.call('RPUSH', ARGV[3] .. queue, job)
    else
      redis.call('RPUSH', KEYS[4], cjson.encode({
        failed_at = ARGV[4], payload = job, exception = 'malformed_payload',
        error = 'a scheduled job names no valid queue', backtrace = {}, worker = '', queue = '',
        reason = 'malformed_payload'}))
    end
    moved = moved + 1
  end
end
return moved
