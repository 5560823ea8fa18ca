#!lua flags=allow-oom
-- Claim the replay marks of signed jobs a worker fetched, before they run:
-- of all copies of one job attempt, exactly one sets its mark's bit. The
-- claim is recorded beside the job in the worker's in-flight hash (field
-- "c<token>" = "<bit> <mark key>"), so a requeue or the recovery of a dead
-- worker can release it; an ack keeps the mark set for good. A mark's
-- bitmap lives until the latest expiry of the jobs it marks.
--
-- Claims come in groups, one per (in-flight hash, bitmap): a burst shares a
-- queue and a producer's block, so a burst of any size costs one HEXISTS,
-- one BITFIELD, one HSET and one expiry read, not three calls a claim. The
-- caller lays the arguments out so they go to Redis as they are (unpack),
-- with no per-claim string work here.
--
-- Why one HEXISTS tells for a whole group: only two things take a job out
-- of a worker's in-flight hash while the worker holds it in memory: a
-- reaper, which takes everything the hash holds at once (but a poison job,
-- which runs alone: a worker holding one holds nothing else), and nothing
-- else (the worker's own requeue and ack take jobs it no longer holds).
-- Tokens only grow for a worker (the fetch keeps its counter above every
-- token the worker was given), so the job with the lowest token was
-- fetched first: if it is still here, no reaper ran since, and every other
-- job of the group, fetched later, is here too. If it is gone (or the
-- caller could not tell the lowest), each job is looked at on its own.
--
-- KEYS pairs, one per group: resq:inflight:<id>:<q>, resq:marks:<q>:<block>
-- ARGV[1] the number of groups; then per group of n claims:
--   n, the lowest token ("" when unknown), keep-until (unix ms, the latest
--   of the group), 4n BITFIELD arguments ("SET", "u1", bit, "1" per claim),
--   2n HSET arguments ("c<token>", "<bit> <mark key>" per claim)
-- Returns one code per claim, group by group: 0 claimed, 1 replayed
-- (another copy holds the attempt, or an earlier copy in this call), 2 gone
-- (a reaper took the job back from this worker).
--
-- allow-oom (the first line; Redis 7): at maxmemory with noeviction, Redis
-- refuses a script's first memory-growing write (BITFIELD here), so workers
-- could not claim, hence not run, the jobs whose acks would free the memory:
-- they fetched, failed to claim and put back in a loop until an operator
-- freed memory. A claim adds a few bytes (a field, at worst a 512-byte
-- bitmap) and lets a job run whose ack frees its payload.
local out = {}
local at = 2
for g = 1, tonumber(ARGV[1]) do
  local flight, block = KEYS[2 * g - 1], KEYS[2 * g]
  local n, lowest, keep = tonumber(ARGV[at]), ARGV[at + 1], tonumber(ARGV[at + 2])
  local bits = at + 3
  local fields = bits + 4 * n
  at = fields + 2 * n
  -- here[i] is false for a job a reaper took; nil when every job is here.
  local here = nil
  if lowest == '' or redis.call('HEXISTS', flight, lowest) == 0 then
    here = {}
    for i = 1, n do
      here[i] = redis.call('HEXISTS', flight, string.sub(ARGV[fields + 2 * i - 2], 2)) == 1
    end
  end
  local old
  if here == nil then
    old = redis.call('BITFIELD', block, unpack(ARGV, bits, fields - 1))
  else
    local args, of = {}, {}
    for i = 1, n do
      if here[i] then
        for a = bits + 4 * i - 4, bits + 4 * i - 1 do
          args[#args + 1] = ARGV[a]
        end
        of[#of + 1] = i
      end
    end
    old = {}
    if #of > 0 then
      local got = redis.call('BITFIELD', block, unpack(args))
      for j, i in ipairs(of) do
        old[i] = got[j]
      end
    end
  end
  -- The codes, and whether every claim of the group took its bit.
  local all = here == nil
  local claimed = 0
  for i = 1, n do
    local code
    if here ~= nil and not here[i] then
      code = 2
    elseif old[i] == 1 then
      code = 1
      all = false
    else
      code = 0
      claimed = claimed + 1
    end
    out[#out + 1] = code
  end
  if all then
    redis.call('HSET', flight, unpack(ARGV, fields, at - 1))
  elseif claimed > 0 then
    local pairs_of = {}
    for i = 1, n do
      if out[#out - n + i] == 0 then
        pairs_of[#pairs_of + 1] = ARGV[fields + 2 * i - 2]
        pairs_of[#pairs_of + 1] = ARGV[fields + 2 * i - 1]
      end
    end
    redis.call('HSET', flight, unpack(pairs_of))
  end
  if claimed > 0 and redis.call('PEXPIRETIME', block) < keep then
    redis.call('PEXPIREAT', block, keep)
  end
end
return out
