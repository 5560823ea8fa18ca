-- One request's admission, in one round trip: the client's failed-
-- authentication budget (looked at, not counted), its token's surge
-- throttle, its rate limits (GCRA, see gcra.lua) and, when they let it
-- pass, its token's surge accounting (see surge.lua).
--
-- KEYS: the limits' keys, then the token's baseline hash, its throttle key
--       and the client's failed-authentication key.
-- ARGV: n (the number of limits), 3n limit values, the surge's seven, then
--       the failed-authentication limit's interval and burst.
-- Reply: {1, remaining, reset_ms, surge} admitted (surge: 1 when a surge
--        throttle began); {0, retry_ms, index, 0} refused by limit index;
--        {2, throttle_ms, 0, 0} throttled; {3, retry_ms, 0, 0} the client
--        is over its failed-authentication budget.
local n = tonumber(ARGV[1])
local failures = gcra({KEYS[n + 3]}, {ARGV[1 + 3 * n + 8], ARGV[1 + 3 * n + 9], 0})
if failures[1] == 0 then
  return {3, failures[2], 0, 0}
end
local throttled = redis.call('PTTL', KEYS[n + 2])
if throttled > 0 then
  return {2, throttled, 0, 0}
end
local limit_keys, limit_args = {}, {}
for i = 1, n do
  limit_keys[i] = KEYS[i]
end
for i = 1, 3 * n do
  limit_args[i] = ARGV[1 + i]
end
local decision = gcra(limit_keys, limit_args)
if decision[1] == 0 then
  decision[4] = 0
  return decision
end
local surge_args = {}
for i = 1, 7 do
  surge_args[i] = ARGV[1 + 3 * n + i]
end
decision[4] = surge({KEYS[n + 1], KEYS[n + 2]}, surge_args)[1]
return decision
