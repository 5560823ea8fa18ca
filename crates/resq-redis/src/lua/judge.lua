-- Cluster mode: is a worker dead? Its liveness mark and the fleet's beat
-- are in the fleet's slot, apart from the in-flight hashes recover.lua
-- empties in their queues' slots, so the judgement is made here first.
--
-- KEYS[1] resq:alive:<id>  KEYS[2] resq:beat
-- ARGV[1] the continuity needed (ms)
-- Returns 1 dead, -1 alive, -2 not judged yet (renewals not continuous).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
if not continuous(KEYS[2], ARGV[1]) then
  return -2
end
return 1
