local expected = {'zset', 'hash', 'string', 'string'}
for i = 1, 4 do
  local found = redis.call('TYPE', KEYS[i]).ok
  if found ~= 'none' and found ~= expected[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. found .. ', expected a ' .. expected[i])
  end
end
local count = redis.call('GET', KEYS[4])
if count and not tonumber(count) then
  return redis.error_reply('WRONGTYPE ' .. KEYS[4] .. ' holds no integer')
end
