-- Shared by the scripts that take jobs out of a worker's in-flight record
-- (prepended to each). The record of one (worker, queue): a hash, token ->
-- the first token of the job's batch, `c<token>` -> its replay claim,
-- `b<first>` -> how many of the batch are still in flight, `x` -> a marker
-- that keeps the hash a hashtable (see fetch.lua); each batch's jobs
-- in a list, `<batches>:<first>`, in fetch order (fetch.lua fills it inside
-- Redis, so a payload never passes through a script on its way to a worker).

-- A batch's list, by the first token of the batch (a number or its
-- digits).
local function inflight_batch(batches, first)
  return batches .. ':' .. string.format('%d', tonumber(first))
end

-- The job with `token` of the batch that begins at `first` (nil if gone).
-- A record written before batches held the job itself: it is returned as
-- it is, so jobs in flight across an upgrade are still put back.
local function inflight_job(batches, token, first)
  local start = tonumber(first)
  if not start then
    return first
  end
  local index = tonumber(token) - start
  if index < 0 then
    return nil
  end
  return redis.call('LINDEX', inflight_batch(batches, first), index)
end

-- The jobs with `tokens` of the batch `first` have left `flight` (their
-- fields already deleted): the batch's list goes with its last job, and
-- the hash with its last batch (the marker alone left in it). While the
-- batch stays, each job's place in its list is emptied unless `keep` (small
-- jobs, whose batch soon goes whole), so a slow job does not keep its
-- batch's large payloads in memory.
local function inflight_gone(flight, batches, first, tokens, keep)
  local start = tonumber(first)
  if not start then
    return
  end
  local count = 'b' .. first
  if redis.call('HINCRBY', flight, count, -#tokens) <= 0 then
    redis.call('HDEL', flight, count)
    redis.call('DEL', inflight_batch(batches, first))
    if redis.call('HLEN', flight) <= 1 then
      redis.call('DEL', flight)
    end
  elseif not keep then
    local batch = inflight_batch(batches, first)
    for _, token in ipairs(tokens) do
      local index = tonumber(token) - start
      if index >= 0 then
        -- pcall: a list that is not there (an inconsistency) must not stop
        -- the script halfway.
        redis.pcall('LSET', batch, index, '')
      end
    end
  end
end
