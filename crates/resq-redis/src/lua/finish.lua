-- Ack: for the finished jobs still in this worker's in-flight hashes (a
-- reaper may have taken some back while they ran: those are left alone and
-- reported, never acked twice), remove them and their claims (the replay
-- marks stay set: the attempt is spent), append failure records (the oldest
-- trimmed past the cap, and counted), schedule retries, and count processed
-- and failed globally and per worker, in one step. A failed job counts as
-- processed too (Resque's rule).
--
-- KEYS[1] stat:processed  KEYS[2] stat:failed
-- KEYS[3] stat:processed:<id>  KEYS[4] stat:failed:<id>  KEYS[5] failed list
-- KEYS[6] resq:retry (sorted set: next attempt -> due, unix ms)
-- KEYS[7] resq:stat:failed-trimmed  KEYS[8] resque:worker:<id> (Resque's
--   "working" record)
-- KEYS[9] resq:failure-index (failure_id -> record)
-- KEYS[10] resq:solo:<id> ("<token> <sha1>" of a suspect running alone)
-- KEYS[11 ..] quads, one per queue (list number l = 1..L): in-flight
--   hash, resq:suspects:<q>, resq:suspects-at:<q>, the batches' prefix
-- ARGV[1] L  ARGV[2] most records the failed list keeps
-- ARGV[3] the working record: "keep", "clear" or "show"  ARGV[4] the record to show
-- ARGV[5] one character a list: "1" where its jobs are small (their places
--   in a batch that stays are not emptied: the batch soon goes whole)
-- ARGV[6 ..]: per job, six values: in-flight hash number (1..L), token,
--   failure record or "", its failure_id or "", next attempt or "", its due
--   time (unix ms)
-- Returns {processed, trimmed, taken token, ...}.
local lists = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local FIRST = 6
local by_list = {}
for i = FIRST, #ARGV, 6 do
  local list = tonumber(ARGV[i])
  by_list[list] = by_list[list] or {}
  table.insert(by_list[list], i)
end
-- One HMGET says which jobs are still here (a reaper may have taken them
-- back) and their batches, without copying a payload; one HDEL removes
-- them and their claims; each batch's count goes down once, and its list
-- goes with its last job.
local present = {}
local taken = {}
for list = 1, lists do
  local entries = by_list[list]
  if entries then
    local flight, batches = KEYS[7 + 4 * list], KEYS[10 + 4 * list]
    local tokens = {}
    for _, i in ipairs(entries) do
      tokens[#tokens + 1] = ARGV[i + 1]
    end
    -- In slices: Lua's unpack has a stack limit.
    local firsts = {}
    for s = 1, #tokens, 1000 do
      local got = redis.call('HMGET', flight, unpack(tokens, s, math.min(s + 999, #tokens)))
      for j = 1, #got do
        firsts[s + j - 1] = got[j]
      end
    end
    local fields = {}
    local gone = {}
    local seen = {}
    for j, i in ipairs(entries) do
      local token, first = ARGV[i + 1], firsts[j]
      if seen[token] then
        -- Listed twice in one call: acked once.
        first = false
      end
      seen[token] = true
      if first then
        present[i] = true
        gone[first] = gone[first] or {}
        table.insert(gone[first], token)
        fields[#fields + 1] = token
        fields[#fields + 1] = 'c' .. token
        if #fields >= 1000 then
          redis.call('HDEL', flight, unpack(fields))
          fields = {}
        end
      elseif firsts[j] == false then
        taken[#taken + 1] = token
      end
    end
    if #fields > 0 then
      redis.call('HDEL', flight, unpack(fields))
    end
    local small = string.sub(ARGV[5], list, list) == '1'
    for first, tokens in pairs(gone) do
      inflight_gone(flight, batches, first, tokens, small)
    end
  end
end
-- A suspect that ran alone and came back (whatever its outcome) did not take
-- its worker down: it is a suspect no more.
local solo = redis.call('GET', KEYS[10])
if solo then
  local space = string.find(solo, ' ', 1, true)
  local solo_token = space and string.sub(solo, 1, space - 1)
  for i = FIRST, #ARGV, 6 do
    if present[i] and ARGV[i + 1] == solo_token then
      local sha = string.sub(solo, space + 1)
      local list = tonumber(ARGV[i])
      redis.call('HDEL', KEYS[8 + 4 * list], sha)
      redis.call('ZREM', KEYS[9 + 4 * list], sha)
      redis.call('DEL', KEYS[10])
      break
    end
  end
end
local processed, failed = 0, 0
local records = {}
for i = FIRST, #ARGV, 6 do
  if present[i] then
    processed = processed + 1
    if ARGV[i + 2] ~= '' then
      records[#records + 1] = {ARGV[i + 2], ARGV[i + 3]}
      failed = failed + 1
    end
    if ARGV[i + 4] ~= '' then
      -- A failed attempt with attempts left: counted as failed, retried later.
      redis.call('ZADD', KEYS[6], ARGV[i + 5], ARGV[i + 4])
      failed = failed + 1
    end
  end
end
local trimmed = 0
if #records > 0 then
  failed_push(KEYS[5], KEYS[9], records)
  trimmed = failed_trim(KEYS[5], KEYS[9], KEYS[7], cap)
end
if processed > 0 then
  redis.call('INCRBY', KEYS[1], processed)
  redis.call('INCRBY', KEYS[3], processed)
end
if failed > 0 then
  redis.call('INCRBY', KEYS[2], failed)
  redis.call('INCRBY', KEYS[4], failed)
end
if ARGV[3] == 'show' then
  redis.call('SET', KEYS[8], ARGV[4])
elseif ARGV[3] == 'clear' then
  redis.call('DEL', KEYS[8])
end
local out = {processed, trimmed}
for _, token in ipairs(taken) do
  out[#out + 1] = token
end
return out
