local function write_events(first, count)
  local scores_end = first + 2 * count - 1
  local details_end = first + 4 * count - 1
  local changed = 0
  for i = first, scores_end, 1000 do
    changed = changed + redis.call('ZADD', KEYS[1], 'CH', unpack(ARGV, i, math.min(i + 999, scores_end)))
  end
  for i = scores_end + 1, details_end, 1000 do
    changed = changed + redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 999, details_end)))
  end
  return count, changed
end
