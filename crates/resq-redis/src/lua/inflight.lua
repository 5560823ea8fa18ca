-- Shared by the scripts that take jobs out of a worker's in-flight record
-- (prepended to each). The record of one (worker, queue): a hash, token ->
-- the first token of the job's batch, `c<token>` -> its replay claim,
-- `b<first>` -> how many of the batch are still in flight, `x` -> a marker
-- that keeps the hash a hashtable (see fetch.lua); each batch's jobs
-- in a list, `<batches>:<first>`, in fetch order (fetch.lua fills it inside
-- Redis, so a payload never passes through a script on its way to a worker).

-- A batch's list, by the first token of the batch (a number or its
-- digits, padded or not).
local function inflight_batch(batches, first)
  return batches .. ':' .. string.format('%d', tonumber(first))
end

-- The job with `token` of the batch that begins at `first` (nil if gone).
local function inflight_job(batches, token, first)
  return redis.call('LINDEX', inflight_batch(batches, first), tonumber(token) - tonumber(first))
end

-- `n` jobs of the batch `first` have left `flight`: the batch's list goes
-- with its last job, and the hash with its last batch (the marker alone
-- left in it).
local function inflight_gone(flight, batches, first, n)
  local count = 'b' .. first
  if redis.call('HINCRBY', flight, count, -n) <= 0 then
    redis.call('HDEL', flight, count)
    redis.call('DEL', inflight_batch(batches, first))
    if redis.call('HLEN', flight) <= 1 then
      redis.call('DEL', flight)
    end
  end
end
