-- A login attempt against one name typed, counted before the password is
-- checked (so parallel attempts cannot all pass a lockout that one would
-- have started). KEYS[1] the name's lockout hash; ARGV[1] now (ms),
-- ARGV[2] failures before a lock, ARGV[3] the first lock (ms), ARGV[4] the
-- longest lock (ms). Returns 0 when the name is locked (nothing counted),
-- else 1 after counting the attempt (a success deletes the key).
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_ms') or '0')
local now = tonumber(ARGV[1])
local after = tonumber(ARGV[2])
if failures >= after then
  local doublings = math.min(failures - after, 10)
  local lock = math.min(tonumber(ARGV[3]) * (2 ^ doublings), tonumber(ARGV[4]))
  if now < last + lock then
    return 0
  end
end
redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last_ms', now)
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
