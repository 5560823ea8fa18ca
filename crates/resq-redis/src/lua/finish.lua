-- Ack: remove finished jobs from the in-flight lists, append failure records,
-- mark signed successes as done until they expire (the replay guard), and
-- count processed/failed globally and per worker, in one step.
-- A failed job counts as processed too (Resque's rule).
--
-- KEYS[1] stat:processed  KEYS[2] stat:failed
-- KEYS[3] stat:processed:<id>  KEYS[4] stat:failed:<id>  KEYS[5] failed list
-- KEYS[6 .. 5+L] in-flight lists, then the done marks
-- ARGV[1] L (how many in-flight lists)
-- ARGV[2..]: per job, five values: in-flight list number (1..L), payload,
--   failure record or "", done mark number (0 = none), done-until (unix ms)
local lists = tonumber(ARGV[1])
local processed, failed = 0, 0
for i = 2, #ARGV, 5 do
  redis.call('LREM', KEYS[5 + tonumber(ARGV[i])], 1, ARGV[i + 1])
  processed = processed + 1
  if ARGV[i + 2] ~= '' then
    redis.call('RPUSH', KEYS[5], ARGV[i + 2])
    failed = failed + 1
  end
  local mark = tonumber(ARGV[i + 3])
  if mark > 0 then
    redis.call('SET', KEYS[5 + lists + mark], '1', 'PXAT', ARGV[i + 4])
  end
end
if processed > 0 then
  redis.call('INCRBY', KEYS[1], processed)
  redis.call('INCRBY', KEYS[3], processed)
end
if failed > 0 then
  redis.call('INCRBY', KEYS[2], failed)
  redis.call('INCRBY', KEYS[4], failed)
end
return processed
