-- Record poison jobs (see recover.lua) as failed: each one still in the dead
-- worker's in-flight hash leaves it for the failed list, with its record,
-- and is a suspect no more. Counted as processed and failed, as an ack
-- counts a failure; the failed list kept at its cap.
--
-- KEYS[1] resq:inflight:<id>:<q>  KEYS[2] failed list  KEYS[3] resq:failure-index
-- KEYS[4] stat:processed  KEYS[5] stat:failed  KEYS[6] resq:stat:failed-trimmed
-- KEYS[7] resq:suspects:<q>  KEYS[8] resq:suspects-at:<q>  KEYS[9] resq:solo:<id>
-- KEYS[10] resq:inflight-batch:<id>:<q> (the prefix of its batches' lists)
-- ARGV[1] most records the failed list keeps
-- ARGV[2..] per job, four values: token, record, failure_id, sha1 of the job
-- Returns the number recorded (a job already gone is skipped).
local records = {}
for i = 2, #ARGV, 4 do
  local first = redis.call('HGET', KEYS[1], ARGV[i])
  if first then
    redis.call('HDEL', KEYS[1], ARGV[i])
    inflight_gone(KEYS[1], KEYS[10], first, {ARGV[i]})
    records[#records + 1] = {ARGV[i + 1], ARGV[i + 2]}
    redis.call('HDEL', KEYS[7], ARGV[i + 3])
    redis.call('ZREM', KEYS[8], ARGV[i + 3])
  end
end
if #records > 0 then
  failed_push(KEYS[2], KEYS[3], records)
  failed_trim(KEYS[2], KEYS[3], KEYS[6], tonumber(ARGV[1]))
  redis.call('INCRBY', KEYS[4], #records)
  redis.call('INCRBY', KEYS[5], #records)
end
redis.call('DEL', KEYS[9])
return #records
