-- Reliable fetch: atomically take up to ARGV[1] jobs, in queue priority order,
-- from the head (left) of each queue into this worker's in-flight hash for
-- that queue, each under a fresh sequence token. A job is never in neither
-- place. Whole batches move in a few calls (LPOP with a count, one HSET), so
-- the cost in Redis is per batch, not per job.
--
-- KEYS[1]  resque:pause-all-workers
-- KEYS[2]  resq:inflight-queues:<id>     (queues this worker holds jobs of)
-- KEYS[3]  resq:inflight-seq:<id>        (the token counter)
-- KEYS[4]  resq:paused-queues             (queues paused by an operator)
-- KEYS[5..] pairs: resque:queue:<q>, resq:inflight:<id>:<q> (a hash token -> job)
-- ARGV[1]  max jobs; ARGV[2..] the queue name of each pair
--
-- Resque's "working" record is not written here: a fetched job may yet be
-- refused; the worker shows a job once it runs.
--
-- Returns {status, pair, token, job, pair, token, job, ...}; status 1 = paused.
if redis.call('GET', KEYS[1]) == 'true' then
  return {1}
end
local max = tonumber(ARGV[1])
local out = {0}
local n = 0
local pair = 0
for k = 5, #KEYS - 1, 2 do
  pair = pair + 1
  if n >= max then break end
  local jobs = false
  if redis.call('SISMEMBER', KEYS[4], ARGV[1 + pair]) == 0 then
    jobs = redis.call('LPOP', KEYS[k], max - n)
  end
  if jobs then
    local last = redis.call('INCRBY', KEYS[3], #jobs)
    local first = last - #jobs
    local fields = {}
    for i, job in ipairs(jobs) do
      local token = tostring(first + i)
      fields[#fields + 1] = token
      fields[#fields + 1] = job
      out[#out + 1] = pair
      out[#out + 1] = token
      out[#out + 1] = job
      -- HSET in slices: Lua's unpack has a stack limit.
      if #fields >= 1000 then
        redis.call('HSET', KEYS[k + 1], unpack(fields))
        fields = {}
      end
    end
    if #fields > 0 then
      redis.call('HSET', KEYS[k + 1], unpack(fields))
    end
    redis.call('SADD', KEYS[2], ARGV[1 + pair])
    n = n + #jobs
  end
end
return out
