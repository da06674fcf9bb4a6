local stored = redis.call('GET', KEYS[3]) or ''
if stored ~= ARGV[1] then return {0, stored} end
local feed_error = feed_type_error(KEYS[5])
if feed_error then return feed_error end
local wrong = check_boards()
if wrong then return wrong end
local hidden = hidden_members()
local count, changed = write_events(6, tonumber(ARGV[4]))
changed = changed + write_boards_grouped(6 + 5 * count, count, function(i) return ARGV[6 + 2 * i], ARGV[7 + 2 * i] end, hidden)
if next(hidden) then
  -- Written in bulk above, taken back here: hidden members are rare.
  for i = 0, count - 1 do
    local member = ARGV[7 + 2 * i]
    if hidden[member] then
      redis.call('ZREM', KEYS[1], member)
      redis.call('HDEL', KEYS[2], member)
    end
  end
end
if count > 0 then redis.call('INCRBY', KEYS[4], count) end
redis.call('SET', KEYS[3], ARGV[2])
local last = feed_ids(KEYS[5])
local announced = last_position(KEYS[5], last)
local ids = 6 + 4 * count
local first = count
for i = 0, count - 1 do
  if id_after(ARGV[ids + i], announced) then first = i; break end
end
if first < count and (count - first > tonumber(ARGV[5]) or not id_after(ARGV[ids + first], last)) then
  -- Too many to announce one by one, or a reset took the first new one's ID: one reset for
  -- them all, at the batch's last position if it is free.
  local tail = ARGV[ids + count - 1]
  if id_after(tail, last) then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], tail, 'reset', count - first)
  else
    announce_reset(KEYS[5], ARGV[3], tail)
  end
elseif first == count then
  if changed > 0 then announce_reset(KEYS[5], ARGV[3]) end
else
  for i = first, count - 1 do
    local score, member = ARGV[6 + 2 * i], ARGV[7 + 2 * i]
    if not hidden[member] then
      -- Shared by equal scores (1, 2, 2, 4): one more than the entries scoring lower.
      local rank = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. score) + 1
      redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], ARGV[ids + i],
        'member', member, 'rank', rank, 'score', score, 'details', ARGV[7 + 2 * count + 2 * i])
    end
  end
end
return {1, ''}
