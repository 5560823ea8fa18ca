-- Append failure records resq found outside a worker's ack (a scheduled job
-- that names no usable queue), count them, and keep the failed list at its
-- cap, as the ack does.
--
-- KEYS[1] failed list  KEYS[2] stat:failed  KEYS[3] resq:stat:failed-trimmed
-- KEYS[4] resq:failure-index
-- ARGV[1] most records the failed list keeps  ARGV[2..] record, id pairs
-- Returns how many old records were trimmed.
local records = {}
for i = 2, #ARGV, 2 do
  records[#records + 1] = {ARGV[i], ARGV[i + 1]}
end
failed_push(KEYS[1], KEYS[4], records)
redis.call('INCRBY', KEYS[2], #records)
return failed_trim(KEYS[1], KEYS[4], KEYS[3], tonumber(ARGV[1]))
