-- The expiry sweeper: remove jobs whose expires_at has passed from the queues
-- and both schedules, count them, and record them in a capped list. Runs
-- only if this caller takes (or holds) the sweep lock, which lasts one sweep
-- interval, so among many workers one sweeps per interval. Scans at most ARGV[4] jobs
-- per queue or schedule, from the head (the oldest), to bound its time.
--
-- KEYS[1] resq:sweep-lock  KEYS[2] resq:expired (list)  KEYS[3] resque:queues
-- KEYS[4] resq:schedule  KEYS[5] resq:retry  KEYS[6] resq:stat:expired
-- ARGV[1] now (unix ms)  ARGV[2] lock owner  ARGV[3] lock ttl (ms)
-- ARGV[4] most jobs scanned per list  ARGV[5] most records kept
-- ARGV[6] queue key prefix  ARGV[7] now as text
-- Returns -1 when another sweeper holds the lock, else the number removed.
-- Queue keys are built here: this script assumes one Redis, not a cluster.
-- The lock's holder may sweep again in its interval (its next tick can reach
-- Redis a little before the lock lapses; a burst of expired jobs is swept
-- in several rounds): it renews the lock.
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[2] then
    return -1
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local now = tonumber(ARGV[1])
local scan = tonumber(ARGV[4])
local removed = 0
local function expired(job)
  local ok, envelope = pcall(cjson.decode, job)
  if not ok or type(envelope) ~= 'table' then return false end
  local at = envelope['expires_at']
  return type(at) == 'number' and at * 1000 <= now
end
local function record(queue, job)
  redis.call('LPUSH', KEYS[2], cjson.encode({expired_at = ARGV[7], queue = queue, payload = job}))
  removed = removed + 1
end
for _, queue in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local key = ARGV[6] .. queue
  for _, job in ipairs(redis.call('LRANGE', key, 0, scan - 1)) do
    if expired(job) and redis.call('LREM', key, 1, job) > 0 then
      record(queue, job)
    end
  end
end
for k = 4, 5 do
  for _, job in ipairs(redis.call('ZRANGE', KEYS[k], 0, scan - 1)) do
    if expired(job) and redis.call('ZREM', KEYS[k], job) > 0 then
      record('', job)
    end
  end
end
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
if removed > 0 then
  redis.call('INCRBY', KEYS[6], removed)
end
return removed
