-- Append failure records resq found outside a worker's ack (a scheduled job
-- that names no usable queue), count them, and keep the failed list at its
-- cap, as the ack does.
--
-- KEYS[1] failed list  KEYS[2] stat:failed  KEYS[3] resq:stat:failed-trimmed
-- ARGV[1] most records the failed list keeps  ARGV[2..] the records
-- Returns how many old records were trimmed.
for i = 2, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
redis.call('INCRBY', KEYS[2], #ARGV - 1)
local over = redis.call('LLEN', KEYS[1]) - tonumber(ARGV[1])
if over > 0 then
  redis.call('LTRIM', KEYS[1], over, -1)
  redis.call('INCRBY', KEYS[3], over)
  return over
end
return 0
