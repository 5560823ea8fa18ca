-- Remove exactly this failure record and its index entry.
--
-- KEYS[1] failed list  KEYS[2] resq:failure-index
-- ARGV[1] the record  ARGV[2] its id, or ''
-- Returns 1 when removed, 0 when it was gone.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
if ARGV[2] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
