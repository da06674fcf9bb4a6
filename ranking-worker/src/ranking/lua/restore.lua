local feed_error = feed_type_error(KEYS[5])
if feed_error then return feed_error end
local wrong = check_boards()
if wrong then return wrong end
local hidden = hidden_members()
local count = tonumber(ARGV[1])
local on_boards = write_boards(2 + 3 * count, count, function(i) return ARGV[3 + 3 * i], ARGV[2 + 3 * i] end, hidden)
local result, changed_any = {}, false
for i = 0, count - 1 do
  local member, score, details = ARGV[2 + 3 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i]
  local changed = 0
  if not hidden[member] then
    changed = redis.call('ZADD', KEYS[1], 'CH', score, member)
    if redis.call('HGET', KEYS[2], member) ~= details then
      redis.call('HSET', KEYS[2], member, details)
      changed = 1
    end
  end
  if on_boards[i + 1] > 0 then changed = 1 end
  result[#result + 1] = changed
  if changed == 1 then changed_any = true end
end
if changed_any and ARGV[#ARGV - 1] == '1' then announce_reset(KEYS[5], ARGV[#ARGV]) end
return result
