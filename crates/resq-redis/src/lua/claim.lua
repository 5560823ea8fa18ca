#!lua flags=allow-oom
-- Claim the replay marks of signed jobs a worker fetched, before they run:
-- of all copies of one job attempt, exactly one sets its mark's bit. The
-- claim is recorded beside the job in the worker's in-flight hash (field
-- "c<token>" = "<bit> <mark key>"), so a requeue or the recovery of a dead
-- worker can release it; an ack keeps the mark set for good. A mark's
-- bitmap lives until the latest expiry of the jobs it marks.
--
-- KEYS pairs, one per claim: resq:inflight:<id>:<q>, resq:marks:<q>:<block>
-- ARGV triples, one per claim: token, bit, keep-until (unix ms)
-- Returns one code per claim: 0 claimed, 1 replayed (another copy holds
-- the attempt), 2 gone (a reaper took the job back from this worker).
--
-- allow-oom (the first line; Redis 7): at maxmemory with noeviction, Redis
-- refuses a script's first memory-growing write (SETBIT here), so workers
-- could not claim, hence not run, the jobs whose acks would free the memory:
-- they fetched, failed to claim and put back in a loop until an operator
-- freed memory. A claim adds a few bytes (a field, at worst a 512-byte
-- bitmap) and lets a job run whose ack frees its payload.
local out = {}
-- The latest keep-until per bitmap in this batch: its expiry is read and
-- moved once per bitmap, not once per claim (a burst shares a block).
local keep_of = {}
for c = 1, #KEYS / 2 do
  local flight, block = KEYS[2 * c - 1], KEYS[2 * c]
  local token, bit, keep = ARGV[3 * c - 2], ARGV[3 * c - 1], tonumber(ARGV[3 * c])
  if redis.call('HEXISTS', flight, token) == 0 then
    out[c] = 2
  elseif redis.call('SETBIT', block, bit, 1) == 1 then
    out[c] = 1
  else
    redis.call('HSET', flight, 'c' .. token, bit .. ' ' .. block)
    if not keep_of[block] or keep_of[block] < keep then
      keep_of[block] = keep
    end
    out[c] = 0
  end
end
for block, keep in pairs(keep_of) do
  if redis.call('PEXPIRETIME', block) < keep then
    redis.call('PEXPIREAT', block, keep)
  end
end
return out
