local last, trimmed = feed_ids(KEYS[1])
if id_after(ARGV[1], last) or id_after(trimmed, ARGV[1]) then return {0, {}} end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]) + 1)
if #entries > tonumber(ARGV[2]) then return {0, {}} end
return {1, entries}
