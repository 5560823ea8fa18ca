-- Move due jobs from the schedule and retry sets to the tail of their queues.
-- Atomic, so any number of workers may run it at once: a job moves once.
-- A job whose queue is at its cap stays where it is until there is room.
-- A member whose payload names no usable queue is taken out and returned:
-- the caller records it as a failure (records are built in one place, in
-- Rust, in Resque's format).
--
-- KEYS[1] resq:schedule  KEYS[2] resq:retry  KEYS[3] resque:queues
-- KEYS[4] resq:queue-caps
-- ARGV[1] now (unix ms)  ARGV[2] most jobs to move (and at most four times as many looked at)
-- ARGV[3] queue key prefix ("resque:queue:")  ARGV[4] wake channel
-- ARGV[5] "" or, in cluster mode, the one queue this keyspace holds: a job
--   naming another is unroutable here (its key would be in another slot)
-- Returns {moved, held, unroutable member, ...}.
-- Queue keys are built here from the payload's queue: this script assumes
-- one Redis, not a cluster.
local moved, held = 0, 0
local unroutable = {}
local limit = tonumber(ARGV[2])
local room = {}
local function has_room(queue)
  if room[queue] == nil then
    local cap = redis.call('HGET', KEYS[4], queue)
    room[queue] = cap and (tonumber(cap) - redis.call('LLEN', ARGV[3] .. queue)) or false
  end
  if room[queue] == false then
    return true
  end
  if room[queue] > 0 then
    room[queue] = room[queue] - 1
    return true
  end
  return false
end
-- Held jobs stay at the front of their set: later batches skip past them,
-- so a full queue never blocks due jobs of other queues.
local scanned = 0
for k = 1, 2 do
  local skip = 0
  while moved + #unroutable < limit and scanned < 4 * limit do
    local due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'LIMIT', skip, limit - moved - #unroutable)
    if #due == 0 then break end
    for _, job in ipairs(due) do
      scanned = scanned + 1
      local ok, envelope = pcall(cjson.decode, job)
      local queue = ok and type(envelope) == 'table' and envelope['queue'] or nil
      if type(queue) == 'string' and string.match(queue, '^[%w_%.%-]+$') and #queue <= 128
          and (ARGV[5] == '' or queue == ARGV[5]) then
        if has_room(queue) then
          redis.call('ZREM', KEYS[k], job)
          redis.call('SADD', KEYS[3], queue)
          redis.call('RPUSH', ARGV[3] .. queue, job)
          moved = moved + 1
        else
          held = held + 1
          skip = skip + 1
        end
      else
        redis.call('ZREM', KEYS[k], job)
        unroutable[#unroutable + 1] = job
      end
    end
  end
end
if moved > 0 then
  pcall(redis.call, 'PUBLISH', ARGV[4], '')
end
local out = {moved, held}
for _, job in ipairs(unroutable) do
  out[#out + 1] = job
end
return out
