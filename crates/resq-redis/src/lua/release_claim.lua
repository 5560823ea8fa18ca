-- Shared by the scripts that put a job back in a queue (prepended to each):
-- the job's claim, if it made one, is released, so the copy that runs next
-- can claim the attempt again (at-least-once delivery).
local function release_claim(flight, token)
  local claim = redis.call('HGET', flight, 'c' .. token)
  if claim then
    local space = string.find(claim, ' ', 1, true)
    local block = space and string.sub(claim, space + 1)
    -- A bitmap that expired meanwhile is not made again (it would never expire).
    if block and redis.call('EXISTS', block) == 1 then
      redis.call('SETBIT', block, string.sub(claim, 1, space - 1), 0)
    end
    redis.call('HDEL', flight, 'c' .. token)
  end
end

