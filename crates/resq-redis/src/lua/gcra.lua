-- Rate limits (GCRA), several at once, all or nothing: the request passes
-- only if every limit lets it, and only then does any of them count it.
-- Time is the server's (TIME), so every API replica shares one clock.
--
-- KEYS: one key per limit (its theoretical arrival time, µs).
-- ARGV: per limit, three values: emission interval (µs per unit), burst
--       (units allowed at once), cost (units this request takes; 0 = only
--       look: would one more unit pass? nothing is counted). The limits
--       come in KEYS order.
-- Reply: {1, remaining, reset_ms} when allowed (remaining: the fewest units
--        left among the limits; reset_ms: until every limit is full again),
--        {0, retry_after_ms, index} when refused by limit `index` (1-based,
--        the one that asks the longest wait).
local function gcra(keys, argv)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local new_tats = {}
  local retry, refused_by = 0, 0
  local remaining, reset = nil, 0
  for i = 1, #keys do
    local interval = tonumber(argv[(i - 1) * 3 + 1])
    local burst = tonumber(argv[(i - 1) * 3 + 2])
    local cost = tonumber(argv[(i - 1) * 3 + 3])
    if cost == 0 then
      cost = 1
    end
    local tat = tonumber(redis.call('GET', keys[i]) or now)
    if tat < now then
      tat = now
    end
    local new_tat = tat + interval * cost
    local allow_at = new_tat - interval * burst
    if allow_at > now then
      if allow_at - now > retry then
        retry = allow_at - now
        refused_by = i
      end
    end
    new_tats[i] = new_tat
    local left = math.floor((now - allow_at) / interval)
    if remaining == nil or left < remaining then
      remaining = left
    end
    if new_tat - now > reset then
      reset = new_tat - now
    end
  end
  if refused_by > 0 then
    return {0, math.ceil(retry / 1000), refused_by}
  end
  for i = 1, #keys do
    local cost = tonumber(argv[(i - 1) * 3 + 3])
    if cost > 0 then
      local ttl_ms = math.ceil((new_tats[i] - now) / 1000) + 1
      redis.call('SET', keys[i], string.format('%d', new_tats[i]), 'PX', ttl_ms)
    end
  end
  if remaining == nil or remaining < 0 then
    remaining = 0
  end
  return {1, remaining, math.ceil(reset / 1000)}
end
