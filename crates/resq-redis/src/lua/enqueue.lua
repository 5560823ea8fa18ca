-- Enqueue with queue caps: every queue in the call is checked against its cap
-- first, then every job is pushed, all at once. A full queue refuses the whole
-- call and nothing is stored. Ends with a wake-up signal for idle workers.
--
-- KEYS[1] resque:queues  KEYS[2] resq:queue-caps (hash queue -> max length)
-- KEYS[3..] resque:queue:<q>, one per queue in the call
-- ARGV[1] wake channel
-- ARGV[2..] per queue: name, job count, then that many jobs
-- Returns {0} when stored, or {1, queue, cap, length} when a queue is full.
local groups = {}
local i = 2
local k = 3
while i <= #ARGV do
  local name, count = ARGV[i], tonumber(ARGV[i + 1])
  groups[#groups + 1] = {key = KEYS[k], name = name, first = i + 2, last = i + 1 + count}
  i = i + 2 + count
  k = k + 1
end
for _, g in ipairs(groups) do
  local cap = redis.call('HGET', KEYS[2], g.name)
  if cap then
    local length = redis.call('LLEN', g.key)
    if length + (g.last - g.first + 1) > tonumber(cap) then
      return {1, g.name, tonumber(cap), length}
    end
  end
end
for _, g in ipairs(groups) do
  redis.call('SADD', KEYS[1], g.name)
  for s = g.first, g.last, 1000 do
    redis.call('RPUSH', g.key, unpack(ARGV, s, math.min(s + 999, g.last)))
  end
end
-- Best effort: an ACL user without channel rights still enqueues.
pcall(redis.call, 'PUBLISH', ARGV[1], '')
return {0}
