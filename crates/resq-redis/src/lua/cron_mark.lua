-- Shared by the scripts that fire a recurring job's tick (prepended to
-- each): marks `tick` as the entry's last fired one if it is later than the
-- mark there. Returns whether it did, and the previous mark (-1: none).
local function cron_mark(key, name, tick)
  local previous = tonumber(redis.call('HGET', key, name) or '-1')
  if tonumber(tick) <= previous then
    return false, previous
  end
  redis.call('HSET', key, name, tick)
  return true, previous
end
