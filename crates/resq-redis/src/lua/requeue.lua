-- Put in-flight jobs back at the head of their queues, keeping their order,
-- and release their claims. A job is pushed back only if it was still in
-- flight, so a job the reaper already recovered is never duplicated.
--
-- A suspect put back is still a suspect; its worker may fetch again.
--
-- KEYS[1] resq:solo:<id>
-- KEYS triples from 2: resq:inflight:<id>:<q> (hash), resque:queue:<q>,
--   resq:inflight-batch:<id>:<q> (the prefix of its batches' lists)
-- ARGV pairs, in fetch order: triple number, token
local solo = redis.call('GET', KEYS[1])
local solo_token = solo and string.sub(solo, 1, (string.find(solo, ' ', 1, true) or 1) - 1)
local n = 0
for i = #ARGV - 1, 1, -2 do
  local p = tonumber(ARGV[i])
  local flight, queue, batches, token = KEYS[3 * p - 1], KEYS[3 * p], KEYS[3 * p + 1], ARGV[i + 1]
  if token == solo_token then
    redis.call('DEL', KEYS[1])
  end
  local first = redis.call('HGET', flight, token)
  if first then
    local job = inflight_job(batches, token, first)
    release_claim(flight, token)
    redis.call('HDEL', flight, token)
    if job then
      redis.call('LPUSH', queue, job)
      n = n + 1
    end
    inflight_gone(flight, batches, first, {token})
  end
end
return n
