-- Reliable fetch: atomically move up to ARGV[1] jobs, in queue priority order,
-- from the head (left) of each queue to the tail of this worker's in-flight
-- list for that queue. A job is never in neither place.
--
-- KEYS[1]  resque:pause-all-workers
-- KEYS[2]  resque:worker:<id>         (Resque's "currently working on" record)
-- KEYS[3]  resq:inflight-queues:<id>  (queues this worker holds jobs of)
-- KEYS[4..] pairs: resque:queue:<q>, resq:inflight:<id>:<q>
-- ARGV[1]  max jobs; ARGV[2] run_at (ISO 8601); ARGV[3] "1" when the worker is idle
-- ARGV[4..] the queue name of each pair
--
-- Returns {status, pair, payload, pair, payload, ...}; status 1 = paused.
if redis.call('GET', KEYS[1]) == 'true' then
  return {1}
end
local max = tonumber(ARGV[1])
local out = {0}
local n = 0
local pair = 0
for k = 4, #KEYS - 1, 2 do
  pair = pair + 1
  if n >= max then break end
  local recorded = false
  while n < max do
    local job = redis.call('LMOVE', KEYS[k], KEYS[k + 1], 'LEFT', 'RIGHT')
    if not job then break end
    if not recorded then
      redis.call('SADD', KEYS[3], ARGV[3 + pair])
      recorded = true
    end
    n = n + 1
    out[#out + 1] = pair
    out[#out + 1] = job
  end
end
if n > 0 then
  -- Ruby's resque-web decodes this record: write it only around a payload that
  -- is itself valid JSON, so a hostile payload cannot break the page.
  local ok, decoded = pcall(cjson.decode, out[3])
  if ok and type(decoded) == 'table' then
    redis.call('SET', KEYS[2], '{"queue":' .. cjson.encode(ARGV[3 + out[2]]) ..
      ',"run_at":' .. cjson.encode(ARGV[2]) .. ',"payload":' .. out[3] .. '}')
  end
elseif ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
end
return out
