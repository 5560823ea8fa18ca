-- Shared by the scripts that write the failed list (prepended to each): the
-- list and its index (failure_id -> record, so a record is found by id in
-- one step) change together.

-- Appends records ({record, id} pairs; id may be '') to the list and the
-- index. A list Ruby emptied (resque-web's "clear") leaves an index of
-- records that are gone: it is dropped when the list is found empty.
local function failed_push(failed_key, index_key, records)
  if #records > 0 and redis.call('LLEN', failed_key) == 0 then
    redis.call('DEL', index_key)
  end
  for _, r in ipairs(records) do
    redis.call('RPUSH', failed_key, r[1])
    if r[2] ~= '' then
      redis.call('HSET', index_key, r[2], r[1])
    end
  end
end

-- Keeps the list at `cap` records: drops the oldest (and their index
-- entries) and counts them. Returns how many were dropped.
local function failed_trim(failed_key, index_key, trimmed_key, cap)
  local over = redis.call('LLEN', failed_key) - cap
  if over <= 0 then
    return 0
  end
  for s = 0, over - 1, 1000 do
    local ids = {}
    for _, record in ipairs(redis.call('LRANGE', failed_key, s, math.min(s + 999, over - 1))) do
      local ok, decoded = pcall(cjson.decode, record)
      if ok and type(decoded) == 'table' and type(decoded['failure_id']) == 'string' then
        ids[#ids + 1] = decoded['failure_id']
      end
    end
    if #ids > 0 then
      redis.call('HDEL', index_key, unpack(ids))
    end
  end
  redis.call('LTRIM', failed_key, over, -1)
  redis.call('INCRBY', trimmed_key, over)
  return over
end

