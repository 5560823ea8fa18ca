-- Reliable fetch: atomically take up to ARGV[1] jobs, in queue priority order,
-- from the head (left) of each queue into this worker's in-flight hash for
-- that queue, each under a fresh sequence token. A job is never in neither
-- place. Whole batches move in a few calls (LPOP with a count, one HSET), so
-- the cost in Redis is per batch, not per job.
--
-- Suspects (jobs that were in flight when a worker died, see recover.lua)
-- run alone: a suspect is taken only by an idle worker (no job in the
-- in-flight hashes of the queues it fetches from), as the only job of
-- its fetch, and while this worker holds it (the solo mark) it fetches
-- nothing else. A later death is then the suspect's own doing. A busy worker
-- that meets a suspect at a queue's head puts it back and drains: it
-- fetches nothing more until its jobs are done, then takes the suspect if it
-- is still there.
-- A queue without suspects costs one EXISTS per fetch.
--
-- KEYS[1]  resque:pause-all-workers
-- KEYS[2]  resq:inflight-queues:<id>     (queues this worker holds jobs of)
-- KEYS[3]  resq:inflight-seq:<id>        (the token counter)
-- KEYS[4]  resq:paused-queues             (queues paused by an operator)
-- KEYS[5]  resq:solo:<id>                 ("<token> <sha1>" of the suspect it runs, or "drain")
-- KEYS[6..] triples: resque:queue:<q>, resq:inflight:<id>:<q> (a hash
--          token -> job), resq:suspects:<q> (sha1 of a payload -> its deaths)
-- ARGV[1]  max jobs; ARGV[2] the token floor: the highest token this worker
--          was ever given (the counter is kept above it: a worker that was
--          judged dead and forgotten while it still ran lost its counter, and
--          its tokens must still only grow, see claim.lua)
-- ARGV[3]  "1" when the worker holds jobs in in-flight hashes this call
--          does not name (cluster mode: one queue a call), "0" when it
--          holds none there, "?" when the caller has not looked (cluster
--          mode, to spare a read of every queue per fetch): the script then
--          answers status 3 before it changes anything if it needs to know
--          (a drain mark, or a suspect at the head of the queue)
-- ARGV[4..] the queue name of each triple
--
-- Resque's "working" record is not written here: a fetched job may yet be
-- refused; the worker shows a job once it runs.
--
-- Returns {status, pair, first token, count, job, job, ..., pair, ...}:
-- each queue's jobs in order under tokens first, first + 1, ... (the
-- caller spells them: no string is made here per job); status 1 = paused,
-- 2 = this worker now runs a suspect alone or drains for one: the caller
-- fetches nothing more (cluster mode, where it goes on to other queues);
-- 3 = ARGV[3] was "?" and is needed: nothing was done, ask again.
if redis.call('GET', KEYS[1]) == 'true' then
  return {1}
end
local FIRST = 6
local max = tonumber(ARGV[1])
local floor = tonumber(ARGV[2])
local unknown = ARGV[3] == '?'
local idle = nil
local function is_idle()
  if idle == nil then
    idle = ARGV[3] == '0'
    for k = FIRST + 1, #KEYS, 3 do
      if not idle then break end
      if redis.call('EXISTS', KEYS[k]) == 1 then
        idle = false
      end
    end
  end
  return idle
end
-- Holding a suspect: nothing else. Draining for one: nothing until idle.
local held = redis.call('GET', KEYS[5])
if held then
  if held == 'drain' and unknown then
    return {3}
  end
  if held ~= 'drain' or not is_idle() then
    return {0}
  end
  redis.call('DEL', KEYS[5])
end
local out = {0}
local n = 0
local pair = 0
local drain = false
for k = FIRST, #KEYS - 2, 3 do
  pair = pair + 1
  if n >= max then break end
  if unknown and n == 0 and redis.call('EXISTS', KEYS[k + 2]) == 1 then
    return {3}
  end
  local jobs = false
  if redis.call('SISMEMBER', KEYS[4], ARGV[3 + pair]) == 0 then
    jobs = redis.call('LPOP', KEYS[k], max - n)
  end
  local solo = nil
  if jobs and redis.call('EXISTS', KEYS[k + 2]) == 1 then
    -- Keep the jobs before the first suspect (or the suspect alone, for an
    -- idle worker with nothing taken yet); the rest go back, in order.
    local keep = #jobs
    for i, job in ipairs(jobs) do
      local sha = redis.sha1hex(job)
      if redis.call('HEXISTS', KEYS[k + 2], sha) == 1 then
        keep = i - 1
        if i == 1 and n == 0 and is_idle() then
          keep = 1
          solo = sha
        end
        break
      end
    end
    for i = #jobs, keep + 1, -1 do
      redis.call('LPUSH', KEYS[k], jobs[i])
    end
    if keep < #jobs and not solo then
      -- A suspect waits at this queue's head for an idle worker: this one
      -- drains (fetches nothing until its jobs are done), so the suspect is
      -- taken within a job's run time, however busy the other queues.
      drain = true
    end
    if keep == 0 then
      jobs = false
    elseif keep < #jobs then
      local kept = {}
      for i = 1, keep do
        kept[i] = jobs[i]
      end
      jobs = kept
    end
  end
  if jobs then
    local last = redis.call('INCRBY', KEYS[3], #jobs)
    if last - #jobs < floor then
      last = floor + #jobs
      redis.call('SET', KEYS[3], last)
    end
    local first = last - #jobs
    out[#out + 1] = pair
    out[#out + 1] = first + 1
    out[#out + 1] = #jobs
    local fields = {}
    for i, job in ipairs(jobs) do
      -- A number argument reaches Redis as its decimal digits.
      fields[#fields + 1] = first + i
      fields[#fields + 1] = job
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
    redis.call('SADD', KEYS[2], ARGV[3 + pair])
    n = n + #jobs
    if solo then
      redis.call('SET', KEYS[5], tostring(last) .. ' ' .. solo)
      out[1] = 2
      return out
    end
  end
  if drain then
    redis.call('SET', KEYS[5], 'drain')
    out[1] = 2
    return out
  end
end
return out
