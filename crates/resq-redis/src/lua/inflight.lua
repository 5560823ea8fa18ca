-- Shared by the scripts that take jobs out of a worker's in-flight record
-- (prepended to each). The record of one (worker, queue): a hash, token ->
-- the first token of the job's batch, `c<token>` -> its replay claim,
-- `b<first>` -> how many of the batch are still in flight; each batch's jobs
-- in a list, `<batches>:<first>`, in fetch order (fetch.lua fills it inside
-- Redis, so a payload never passes through a script on its way to a worker).

-- The job with `token` of the batch that begins at `first` (nil if gone).
local function inflight_job(batches, token, first)
  return redis.call('LINDEX', batches .. ':' .. first, tonumber(token) - tonumber(first))
end

-- `n` jobs of the batch `first` have left `flight`: the batch's list goes
-- with its last job.
local function inflight_gone(flight, batches, first, n)
  if redis.call('HINCRBY', flight, 'b' .. first, -n) <= 0 then
    redis.call('HDEL', flight, 'b' .. first)
    redis.call('DEL', batches .. ':' .. first)
  end
end

