-- Move due jobs from the schedule and retry sets to the tail of their queues.
-- Atomic, so any number of workers may run it at once: a job moves once.
-- A member whose payload names no usable queue is taken out and returned:
-- the caller records it as a failure (records are built in one place, in
-- Rust, in Resque's format).
--
-- KEYS[1] resq:schedule  KEYS[2] resq:retry  KEYS[3] resque:queues
-- ARGV[1] now (unix ms)  ARGV[2] most jobs to move  ARGV[3] queue key prefix ("resque:queue:")
-- Returns {moved, unroutable member, ...}.
-- Queue keys are built here from the payload's queue: this script assumes
-- one Redis, not a cluster.
local moved = 0
local unroutable = {}
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
      moved = moved + 1
    else
      unroutable[#unroutable + 1] = job
    end
  end
end
local out = {moved}
for _, job in ipairs(unroutable) do
  out[#out + 1] = job
end
return out
