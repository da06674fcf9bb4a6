if redis.call('SISMEMBER', KEYS[1], '') == 1 then return 0 end
redis.call('SADD', KEYS[1], '')
for i = 1, #ARGV, 1000 do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 1
