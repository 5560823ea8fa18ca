-- Ack: remove finished jobs from the in-flight hashes (one HDEL per hash),
-- append failure records, remember signed successes until they expire (the
-- replay guard: one ZADD, and expired marks trimmed), and count processed and
-- failed globally and per worker, in one step. A failed job counts as
-- processed too (Resque's rule).
--
-- KEYS[1] stat:processed  KEYS[2] stat:failed
-- KEYS[3] stat:processed:<id>  KEYS[4] stat:failed:<id>  KEYS[5] failed list
-- KEYS[6] resq:done (sorted set: job id -> expiry, unix ms)
-- KEYS[7] resq:retry (sorted set: next attempt -> due, unix ms)
-- KEYS[8 .. 7+L] in-flight hashes
-- ARGV[1] L  ARGV[2] now (unix ms)
-- ARGV[3..]: per job, seven values: in-flight hash number (1..L), token,
--   failure record or "", job id to remember or "", remember-until (unix ms),
--   next attempt or "", its due time (unix ms)
local lists = tonumber(ARGV[1])
local tokens = {}
local marks = {}
local processed, failed = 0, 0
for i = 3, #ARGV, 7 do
  local list = tonumber(ARGV[i])
  tokens[list] = tokens[list] or {}
  table.insert(tokens[list], ARGV[i + 1])
  processed = processed + 1
  if ARGV[i + 2] ~= '' then
    redis.call('RPUSH', KEYS[5], ARGV[i + 2])
    failed = failed + 1
  end
  if ARGV[i + 3] ~= '' then
    marks[#marks + 1] = ARGV[i + 4]
    marks[#marks + 1] = ARGV[i + 3]
  end
  if ARGV[i + 5] ~= '' then
    -- A failed attempt with attempts left: counted as failed, retried later.
    redis.call('ZADD', KEYS[7], ARGV[i + 6], ARGV[i + 5])
    failed = failed + 1
  end
end
local function in_slices(command, key, items)
  for s = 1, #items, 1000 do
    redis.call(command, key, unpack(items, s, math.min(s + 999, #items)))
  end
end
for list = 1, lists do
  if tokens[list] then
    in_slices('HDEL', KEYS[7 + list], tokens[list])
  end
end
if #marks > 0 then
  in_slices('ZADD', KEYS[6], marks)
end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[2])
if processed > 0 then
  redis.call('INCRBY', KEYS[1], processed)
  redis.call('INCRBY', KEYS[3], processed)
end
if failed > 0 then
  redis.call('INCRBY', KEYS[2], failed)
  redis.call('INCRBY', KEYS[4], failed)
end
return processed
