-- Shared by the scripts that judge a worker dead (prepended to each): true
-- when the fleet has renewed its liveness marks without a gap for at least
-- min_ms. After an outage every mark has lapsed, live workers' too: until
-- they have all had a full liveness period to renew, a lapsed mark proves
-- nothing.
local function continuous(beat_key, min_ms)
  local since = tonumber(redis.call('GET', beat_key) or '')
  if not since then
    return false
  end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return now - since >= tonumber(min_ms)
end

