local function read_page(offset, limit)
  local stop = tonumber(offset) + tonumber(limit) - 1
  local page = redis.call('ZRANGE', KEYS[1], offset, stop, 'WITHSCORES')
  if #page == 0 then return {'0'} end
  local low, high = page[2], page[#page]
  local entries = redis.call('ZRANGE', KEYS[1], low, high, 'BYSCORE', 'WITHSCORES')
  local result = {tostring(redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. low))}
  for i = 1, #entries, 2 do
    result[#result + 1] = entries[i]
    result[#result + 1] = entries[i + 1]
    result[#result + 1] = redis.call('HGET', KEYS[2], entries[i]) or ''
  end
  return result
end
