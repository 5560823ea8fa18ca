-- Register a worker, or renew its liveness: the liveness mark (a key with a
-- TTL, which the reaper reads), both worker registries, and, when missing or
-- when registering, Resque's `:started` and heartbeat (an older Ruby worker
-- may have pruned us: we list ourselves again). Also keeps the fleet's beat:
-- a key that lapses only when no worker renewed for two thirds of a
-- liveness period, holding since when (Unix ms, Redis TIME) it has not
-- lapsed; a renewal that finds it lapsed starts it again from now, and the
-- reapers then wait a full liveness period before they judge anyone.
--
-- KEYS[1] resq:alive:<id>  KEYS[2] resq:workers  KEYS[3] resque:workers
-- KEYS[4] resque:worker:<id>:started  KEYS[5] resque:workers:heartbeat
-- KEYS[6] resq:beat
-- ARGV[1] worker id  ARGV[2] liveness ttl (ms)  ARGV[3] started text
-- ARGV[4] heartbeat text  ARGV[5] "register" or ""
-- Returns 1 when the liveness mark was still there, 0 when it had lapsed.
local had = redis.call('SET', KEYS[1], '1', 'PX', ARGV[2], 'GET')
redis.call('SADD', KEYS[2], ARGV[1])
local relisted = redis.call('SADD', KEYS[3], ARGV[1]) == 1
local registering = ARGV[5] == 'register'
if registering or redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('SET', KEYS[4], ARGV[3])
end
if registering or relisted or redis.call('HEXISTS', KEYS[5], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[5], ARGV[1], ARGV[4])
end
local beat_ms = math.max(1, math.floor(tonumber(ARGV[2]) * 2 / 3))
local since = redis.call('GET', KEYS[6])
if not since then
  local t = redis.call('TIME')
  since = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
redis.call('SET', KEYS[6], since, 'PX', beat_ms)
if had then
  return 1
end
return 0
