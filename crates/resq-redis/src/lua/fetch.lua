-- Reliable fetch: atomically take up to ARGV[1] jobs, in queue priority order,
-- from the head (left) of each queue into this worker's in-flight record for
-- that queue (see inflight.lua), each under a fresh sequence token. A job is
-- never in neither place. Whole batches move in a few calls, so the cost in
-- Redis is per batch, not per job; and the jobs move inside Redis (SORT ...
-- STORE into the batch's list, then LTRIM): a payload never becomes a Lua
-- string, which Redis 7 hashes byte by byte (a 64 KB job cost Redis three
-- times the CPU when it passed through here). The caller reads the batch's
-- list (LRANGE) after this script. It runs at maxmemory (allow-oom, see
-- scripts.rs): the batch's copy lasts until the LTRIM that follows it, so a
-- fetch holds about what it found, and workers keep draining a full Redis.
--
-- Suspects (jobs that were in flight when a worker died, see recover.lua)
-- run alone: a suspect is taken only by an idle worker (no job in the
-- in-flight hashes of the queues it fetches from), as the only job of
-- its fetch, and while this worker holds it (the solo mark) it fetches
-- nothing else. A later death is then the suspect's own doing. A busy worker
-- that meets a suspect at a queue's head puts it back and drains: it
-- fetches nothing more until its jobs are done, then takes the suspect if it
-- is still there.
-- A queue with jobs and no suspects costs one EXISTS per fetch; a queue with
-- suspects is taken through the script (LPOP), to compare each job, as are
-- a few small jobs when the caller expects small ones (ARGV[4], and
-- INLINE_MOST below).
--
-- KEYS[1]  resque:pause-all-workers
-- KEYS[2]  resq:inflight-queues:<id>     (queues this worker holds jobs of)
-- KEYS[3]  resq:inflight-seq:<id>        (the token counter)
-- KEYS[4]  resq:paused-queues             (queues paused by an operator)
-- KEYS[5]  resq:solo:<id>                 ("<token> <sha1>" of the suspect it runs, or "drain")
-- KEYS[6..] quads: resque:queue:<q>, resq:inflight:<id>:<q> (the hash),
--          resq:suspects:<q> (sha1 of a payload -> its deaths),
--          resq:inflight-batch:<id>:<q> (the prefix of the batches' lists)
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
-- ARGV[4]  one character a queue, "1" where small jobs are expected (the
--          caller saw small ones there last time): up to INLINE_MOST of
--          them are taken through the script and returned with the reply
--          (one round trip; hashing a short string costs little), and
--          stored in the batch's list as well; more move inside Redis
-- ARGV[5..] the queue name of each quad
--
-- Resque's "working" record is not written here: a fetched job may yet be
-- refused; the worker shows a job once it runs.
--
-- Returns {status, pair, first token, count, inline, job, ..., pair, ...}:
-- each queue's jobs, in order under tokens first, first + 1, ..., are in
-- the list <batches>:<first>, and when inline is 1 in the reply too (the
-- caller spells the tokens: no string is made here per job); status 1 =
-- paused,
-- 2 = this worker now runs a suspect alone or drains for one: the caller
-- fetches nothing more (cluster mode, where it goes on to other queues);
-- 3 = ARGV[3] was "?" and is needed: nothing was done, ask again.
if redis.call('GET', KEYS[1]) == 'true' then
  return {1}
end
local FIRST = 6
-- The most jobs a queue's fetch returns with the reply (ARGV[4]). A larger
-- batch moves inside Redis even when its jobs are small: each job taken
-- through the script becomes a Lua string, is pushed back into the batch's
-- list and copied again into the reply, which cost Redis about twice as
-- much as SORT ... STORE, LTRIM and the worker's LRANGE in a batch of 131
-- no-op jobs, and about as much in a batch of 16 (bench lua_cost,
-- docs/benchmarks.md). A chosen bound near that crossing: below it the
-- round trip saved, and the LRANGE's own read, parse and reply (which those
-- figures leave out), weigh more.
local INLINE_MOST = 16
-- The in-flight hash's marker (see below): longer than 64 bytes.
local MARKER = 'resq in-flight record: token -> batch, c<token> -> claim, b<first> -> count'
local max = tonumber(ARGV[1])
local floor = tonumber(ARGV[2])
local unknown = ARGV[3] == '?'
local idle = nil
local function is_idle()
  if idle == nil then
    idle = ARGV[3] == '0'
    for k = FIRST + 1, #KEYS, 4 do
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
for k = FIRST, #KEYS - 3, 4 do
  pair = pair + 1
  if n >= max then break end
  if unknown and n == 0 and redis.call('EXISTS', KEYS[k + 2]) == 1 then
    return {3}
  end
  -- Jobs taken through the script (up to INLINE_MOST small jobs expected,
  -- or a queue with suspects), or how many move inside Redis. Suspects are
  -- looked for only where there are jobs.
  local jobs = false
  local take = 0
  local suspects = false
  local solo = nil
  if redis.call('SISMEMBER', KEYS[4], ARGV[4 + pair]) == 1 then
    take = 0
  else
    local waiting = redis.call('LLEN', KEYS[k])
    if waiting > 0 then
      suspects = redis.call('EXISTS', KEYS[k + 2]) == 1
      local size = math.min(waiting, max - n)
      if suspects or (string.sub(ARGV[4], pair, pair) == '1' and size <= INLINE_MOST) then
        jobs = redis.call('LPOP', KEYS[k], max - n)
      else
        take = size
      end
    end
  end
  if jobs and suspects then
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
    take = keep
  elseif jobs then
    take = #jobs
  end
  if take > 0 then
    local last = redis.call('INCRBY', KEYS[3], take)
    if last - take < floor then
      last = floor + take
      redis.call('SET', KEYS[3], last)
    end
    local first = last - take
    local batch = KEYS[k + 3] .. ':' .. string.format('%d', first + 1)
    if jobs then
      -- A fresh list (tokens only grow, so none should be there).
      redis.call('DEL', batch)
      -- RPUSH in slices: Lua's unpack has a stack limit.
      for s = 1, take, 1000 do
        redis.call('RPUSH', batch, unpack(jobs, s, math.min(s + 999, take)))
      end
    else
      redis.call('SORT', KEYS[k], 'BY', 'nosort', 'LIMIT', 0, take, 'STORE', batch)
      redis.call('LTRIM', KEYS[k], take, -1)
    end
    out[#out + 1] = pair
    out[#out + 1] = first + 1
    out[#out + 1] = take
    if jobs then
      out[#out + 1] = 1
      for i = 1, take do
        out[#out + 1] = jobs[i]
      end
    else
      out[#out + 1] = 0
    end
    -- Each job's batch; and a marker whose value is longer than
    -- hash-max-listpack-value (64 by default), so Redis makes the hash a
    -- hashtable as it creates it. A hash of short values stays a listpack
    -- up to 512 fields, where each lookup is a scan: a batch of 256 cost
    -- O(n^2), twice Redis's CPU per no-op job. The marker goes with the
    -- last batch (inflight.lua).
    local batch_of = string.format('%d', first + 1)
    local fields = {'b' .. batch_of, take, 'x', MARKER}
    for i = 1, take do
      -- A number argument reaches Redis as its decimal digits.
      fields[#fields + 1] = first + i
      fields[#fields + 1] = batch_of
      -- HSET in slices: Lua's unpack has a stack limit.
      if #fields >= 1000 then
        redis.call('HSET', KEYS[k + 1], unpack(fields))
        fields = {}
      end
    end
    if #fields > 0 then
      redis.call('HSET', KEYS[k + 1], unpack(fields))
    end
    redis.call('SADD', KEYS[2], ARGV[4 + pair])
    n = n + take
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
