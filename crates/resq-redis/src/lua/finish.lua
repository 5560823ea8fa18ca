-- Ack: remove finished jobs from the in-flight lists, append failure records,
-- and count processed/failed globally and per worker, in one step.
-- A failed job counts as processed too (Resque's rule).
--
-- KEYS[1] stat:processed  KEYS[2] stat:failed
-- KEYS[3] stat:processed:<id>  KEYS[4] stat:failed:<id>  KEYS[5] failed list
-- KEYS[6..] in-flight lists
-- ARGV: triples (in-flight list number among KEYS[6..], payload, failure record or "")
local processed, failed = 0, 0
for i = 1, #ARGV, 3 do
  redis.call('LREM', KEYS[5 + tonumber(ARGV[i])], 1, ARGV[i + 1])
  processed = processed + 1
  if ARGV[i + 2] ~= '' then
    redis.call('RPUSH', KEYS[5], ARGV[i + 2])
    failed = failed + 1
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
