local feed_error = feed_type_error(KEYS[4])
if feed_error then return feed_error end
local names = redis.call('ZRANGE', KEYS[5], 0, -1)
if #names ~= #ARGV - 2 then return -1 end
for i, name in ipairs(names) do
  if name ~= ARGV[i + 2] then return -1 end
end
redis.call('SADD', KEYS[3], ARGV[1])
local ranked = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
for i = 6, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
announce_reset(KEYS[4], ARGV[2])
return ranked
