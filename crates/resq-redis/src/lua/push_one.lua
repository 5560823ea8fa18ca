-- Shared by the scripts that push one job behind a guard of their own
-- (prepended to each of them): the queue's cap is checked, then the job is
-- pushed and idle workers are woken.
-- Returns nil when pushed, or {queue, cap, length} when the queue is full.
local function push_one(queues_key, queue_key, caps_key, queue, job, channel)
  local cap = redis.call('HGET', caps_key, queue)
  if cap then
    local length = redis.call('LLEN', queue_key)
    if length + 1 > tonumber(cap) then
      return {queue, tonumber(cap), length}
    end
  end
  redis.call('SADD', queues_key, queue)
  redis.call('RPUSH', queue_key, job)
  -- Best effort: an ACL user without channel rights still enqueues.
  pcall(redis.call, 'PUBLISH', channel, '')
  return nil
end

