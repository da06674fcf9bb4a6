local live_count, rebuild_count = tonumber(ARGV[4]), tonumber(ARGV[5])
local first_rebuild = SWAP_BOARDS + live_count
if redis.call('EXISTS', KEYS[7]) == 0 then return -2 end
local stored = redis.call('GET', KEYS[3]) or ''
if stored ~= ARGV[1] then return -1 end
-- The keys read or written by type: the rebuild's, the lists, the feed, the hidden members and
-- the rebuild's boards. The live ranking's are checked above; its boards are only deleted or
-- replaced, whatever they hold.
local expected = {[5] = 'zset', [6] = 'hash', [7] = 'string', [8] = 'string', [9] = 'zset', [10] = 'zset', [11] = 'stream', [12] = 'set'}
for j = 0, rebuild_count - 1 do expected[first_rebuild + 2 * j] = 'zset' end
for i, want in pairs(expected) do
  local found = redis.call('TYPE', KEYS[i]).ok
  if found ~= 'none' and found ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. found .. ', expected a ' .. want)
  end
end
local function listed(list, first, count)
  local names = redis.call('ZRANGE', list, 0, -1)
  if #names ~= count then return false end
  for i = 1, count do
    if names[i] ~= ARGV[first + i - 1] then return false end
  end
  return true
end
if not listed(KEYS[9], 6, live_count) or not listed(KEYS[10], 6 + live_count, rebuild_count) then
  return -3
end
local hidden = redis.call('SMEMBERS', KEYS[12])
if #hidden > 0 then
  redis.call('ZREM', KEYS[5], unpack(hidden))
  redis.call('HDEL', KEYS[6], unpack(hidden))
  for j = 0, rebuild_count - 1 do
    redis.call('ZREM', KEYS[first_rebuild + 2 * j], unpack(hidden))
  end
end
for j = 0, rebuild_count - 1 do
  local board, live = KEYS[first_rebuild + 2 * j], KEYS[first_rebuild + 2 * j + 1]
  local live_expiry = redis.call('PEXPIRETIME', live)
  if live_expiry > 0 and redis.call('PEXPIREAT', board, live_expiry, 'GT') == 1 then
    redis.call('ZADD', KEYS[10], 'GT', live_expiry, ARGV[6 + live_count + j])
  end
end
for i = 1, 2 do
  if redis.call('EXISTS', KEYS[i + 4]) == 1 then
    redis.call('RENAME', KEYS[i + 4], KEYS[i])
  else
    redis.call('DEL', KEYS[i])
  end
end
for k = SWAP_BOARDS, first_rebuild - 1 do
  redis.call('DEL', KEYS[k])
end
for j = 0, rebuild_count - 1 do
  local board, live = KEYS[first_rebuild + 2 * j], KEYS[first_rebuild + 2 * j + 1]
  if redis.call('EXISTS', board) == 1 then
    redis.call('RENAME', board, live)
  end
end
if redis.call('EXISTS', KEYS[10]) == 1 then
  redis.call('RENAME', KEYS[10], KEYS[9])
else
  redis.call('DEL', KEYS[9])
end
redis.call('DEL', KEYS[7], KEYS[8])
redis.call('SET', KEYS[3], ARGV[2])
announce_reset(KEYS[11], ARGV[3])
return redis.call('ZCARD', KEYS[1])
