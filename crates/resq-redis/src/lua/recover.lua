-- Recover one in-flight hash of a worker that is gone: its claims are
-- released and every job goes back to the head of its queue, in the order
-- it was fetched (by token). Unless forced (the worker unregistering
-- itself), nothing moves while the worker's liveness mark exists, nor while
-- the fleet's renewals have not been continuous for a full liveness period
-- (after an outage, a lapsed mark proves nothing).
--
-- A death is counted against each job it interrupts (unless forced: a worker
-- leaving on its own crashed nothing), by the SHA-1 of its payload in
-- resq:suspects:<q>, with who died and when. A job counted once is a suspect:
-- it runs alone from then on (fetch.lua), so a death while it runs alone is
-- its own. A job put back ARGV[3] times whose lone run kills its worker once
-- more is poison: it is not put back but returned, still in the in-flight
-- hash, for the caller to record as failed (poison.lua). Counts older than
-- ARGV[5] ms are forgotten, a hundred per call, and both keys expire
-- ARGV[5] ms after the last death counted, so they stay bounded.
--
-- KEYS[1] resq:alive:<id>  KEYS[2] resq:inflight:<id>:<q>  KEYS[3] resque:queue:<q>
-- KEYS[4] resq:beat (since when the fleet renewed without a gap)
-- KEYS[5] resq:suspects:<q>  KEYS[6] resq:suspects-at:<q>  KEYS[7] resq:solo:<id>
-- KEYS[8] resq:inflight-batch:<id>:<q> (the prefix of its batches' lists)
-- ARGV[1] "force", "judged" (cluster mode: the caller found the liveness
--   mark gone and the beat continuous, in the fleet's slot) or ""
-- ARGV[2] the continuity needed (ms)
-- ARGV[3] most recoveries of a job (max_recoveries)  ARGV[4] worker id
-- ARGV[5] how long a count is kept (ms)
-- Returns {-1} alive, {-2} not judged yet, else
-- {requeued, token, job, history, sha1, ...} with the poison jobs.
if ARGV[1] == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {-1}
  end
  if not continuous(KEYS[4], ARGV[2]) then
    return {-2}
  end
end
local counting = ARGV[1] ~= 'force'
local max = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if counting then
  local old = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now - tonumber(ARGV[5]), 'LIMIT', 0, 100)
  for _, sha in ipairs(old) do
    redis.call('HDEL', KEYS[5], sha)
    redis.call('ZREM', KEYS[6], sha)
  end
end
local solo = redis.call('GET', KEYS[7])
local solo_token = solo and string.sub(solo, 1, (string.find(solo, ' ', 1, true) or 1) - 1)
local flat = redis.call('HGETALL', KEYS[2])
local jobs = {}
local poison = {}
local batches = {}
for i = 1, #flat, 2 do
  local token = tonumber(flat[i])
  if string.sub(flat[i], 1, 1) == 'b' then
    batches[#batches + 1] = string.sub(flat[i], 2)
  end
  local job = token and inflight_job(KEYS[8], flat[i], flat[i + 1])
  if job then
    release_claim(KEYS[2], flat[i])
    local keep_out = false
    if counting then
      local sha = redis.sha1hex(job)
      local entry = {n = 0, deaths = {}}
      local stored = redis.call('HGET', KEYS[5], sha)
      if stored then
        local ok, decoded = pcall(cjson.decode, stored)
        if ok and type(decoded) == 'table' and type(decoded.n) == 'number' and type(decoded.deaths) == 'table' then
          entry = decoded
        end
      end
      entry.n = entry.n + 1
      table.insert(entry.deaths, {worker = ARGV[4], at = now, alone = flat[i] == solo_token})
      while #entry.deaths > 10 do
        table.remove(entry.deaths, 1)
      end
      local history = cjson.encode(entry)
      redis.call('HSET', KEYS[5], sha, history)
      redis.call('ZADD', KEYS[6], now, sha)
      redis.call('PEXPIRE', KEYS[5], ARGV[5])
      redis.call('PEXPIRE', KEYS[6], ARGV[5])
      if flat[i] == solo_token and entry.n > max then
        keep_out = true
        poison[#poison + 1] = {flat[i], job, history, sha}
      end
    end
    if not keep_out then
      jobs[#jobs + 1] = {token, job, flat[i], flat[i + 1]}
    end
  end
end
table.sort(jobs, function(a, b) return a[1] < b[1] end)
-- Newest first onto the head, so the oldest ends up first in line.
for i = #jobs, 1, -1 do
  redis.call('LPUSH', KEYS[3], jobs[i][2])
end
if #poison == 0 then
  redis.call('DEL', KEYS[2])
  for _, first in ipairs(batches) do
    redis.call('DEL', inflight_batch(KEYS[8], first))
  end
else
  for _, job in ipairs(jobs) do
    redis.call('HDEL', KEYS[2], job[3])
    inflight_gone(KEYS[2], KEYS[8], job[4], {job[3]})
  end
end
-- The solo mark goes with its job when the job was in this hash and went
-- back (a poison job keeps it until poison.lua records it; a job in another
-- queue's hash is that queue's recovery's to judge).
for _, job in ipairs(jobs) do
  if job[3] == solo_token then
    redis.call('DEL', KEYS[7])
  end
end
local out = {#jobs}
for _, p in ipairs(poison) do
  out[#out + 1] = p[1]
  out[#out + 1] = p[2]
  out[#out + 1] = p[3]
  out[#out + 1] = p[4]
end
return out
