-- Fire one tick of a recurring job, at most once across every worker: the
-- tick is fired only if it is later than the entry's last fired tick, and
-- the new mark, the cap check and the push happen together. A full queue
-- spends the tick (it is not tried again) and says so.
--
-- KEYS[1] resq:cron:last (hash entry -> last fired tick, Unix ms)
-- KEYS[2] resque:queues  KEYS[3] resque:queue:<q>  KEYS[4] resq:queue-caps
-- ARGV[1] entry name  ARGV[2] tick (ms)  ARGV[3] queue name  ARGV[4] job
-- ARGV[5] wake channel
-- Returns {0, previous tick or -1} fired, {1, last tick} already fired,
-- {2, queue, cap, length} queue full.
local marked, previous = cron_mark(KEYS[1], ARGV[1], ARGV[2])
if not marked then
  return {1, previous}
end
local full = push_one(KEYS[2], KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5])
if full then
  return {2, full[1], full[2], full[3]}
end
return {0, previous}
