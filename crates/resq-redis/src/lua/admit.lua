-- One request's admission: its rate limits (GCRA, see gcra.lua), then,
-- when they let it pass, its token's surge accounting (see surge.lua),
-- in one round trip.
--
-- KEYS: the limits' keys, then the token's baseline hash and throttle key.
-- ARGV: n (the number of limits), 3n limit values, then the surge's seven.
-- Reply: gcra.lua's reply, with a fourth value: 1 when a surge began.
local n = tonumber(ARGV[1])
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
