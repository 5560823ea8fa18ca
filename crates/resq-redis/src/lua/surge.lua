-- Adaptive throttling: counts a token's accepted jobs per window, keeps an
-- exponentially weighted baseline of its windows, and when the current
-- window passes `multiple` times the baseline (once the baseline has seen
-- `min_windows` windows), throttles the token for a period.
--
-- KEYS[1]: the token's baseline hash (start, count, base, windows)
-- KEYS[2]: the token's throttle key (exists while throttled)
-- ARGV: cost, window_ms, multiple, min_windows, floor (a baseline below it
--       counts as it: a quiet token may still grow), throttle_ms, alpha
-- Reply: {surge (1 when this call started a throttle), count, baseline}
local function surge(keys, argv)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local cost = tonumber(argv[1])
  local window = tonumber(argv[2])
  local multiple = tonumber(argv[3])
  local min_windows = tonumber(argv[4])
  local floor = tonumber(argv[5])
  local throttle_ms = tonumber(argv[6])
  local alpha = tonumber(argv[7])
  local h = redis.call('HMGET', keys[1], 'start', 'count', 'base', 'windows')
  local start = tonumber(h[1]) or now
  local count = tonumber(h[2]) or 0
  local base = tonumber(h[3]) or 0
  local windows = tonumber(h[4]) or 0
  local rolled = h[1] == false
  if now - start >= window then
    rolled = true
    local elapsed = math.floor((now - start) / window)
    base = alpha * count + (1 - alpha) * base
    -- Windows that passed without a request count as empty ones.
    for _ = 2, math.min(elapsed, 64) do
      base = (1 - alpha) * base
    end
    windows = windows + elapsed
    start = start + elapsed * window
    count = 0
  end
  count = count + cost
  local surge = 0
  if windows >= min_windows and count > multiple * math.max(base, floor) then
    if redis.call('EXISTS', keys[2]) == 0 then
      surge = 1
    end
    redis.call('SET', keys[2], '1', 'PX', throttle_ms)
    -- The surge is not folded into the baseline: it would teach it.
    count = 0
  end
  if rolled or surge == 1 then
    redis.call('HSET', keys[1], 'start', string.format('%d', start), 'count', count,
      'base', tostring(base), 'windows', windows)
    redis.call('PEXPIRE', keys[1], math.max(window * 64, 86400000))
  else
    -- Within a window only the count moves (the common case: one write).
    redis.call('HINCRBY', keys[1], 'count', cost)
  end
  return {surge, count, math.floor(base)}
end
