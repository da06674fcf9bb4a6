local function check_boards()
  for i = 6, #KEYS do
    local expected = 'zset'
    if i == 7 then expected = 'set' end
    local found = redis.call('TYPE', KEYS[i]).ok
    if found ~= 'none' and found ~= expected then
      return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. found .. ', expected a ' .. expected)
    end
  end
  if redis.call('SISMEMBER', KEYS[7], '') == 0 then
    return redis.error_reply('UNLOADED ' .. KEYS[7] .. ' is not loaded from Postgres')
  end
end
local function hidden_members()
  local hidden = {}
  if redis.call('SCARD', KEYS[7]) > 1 then
    for _, member in ipairs(redis.call('SMEMBERS', KEYS[7])) do hidden[member] = true end
  end
  return hidden
end
-- An expiry only grows: a process with a shorter retention (a `replay` run with other
-- settings) must not cut short a board another keeps longer. NX sets a board's first expiry,
-- GT lengthens it (Redis 7); the list's score follows the same rule.
local function set_expiries(at, count)
  local expiries = at + 3 * count
  for k = FIRST_BOARD, #KEYS do
    local j = expiries + 2 * (k - FIRST_BOARD)
    if redis.call('PEXPIREAT', KEYS[k], ARGV[j], 'NX') == 0 then
      redis.call('PEXPIREAT', KEYS[k], ARGV[j], 'GT')
    end
    redis.call('ZADD', KEYS[6], 'GT', ARGV[j], ARGV[j + 1])
  end
  -- Boards that expired leave the list (TIME: seconds, then microseconds).
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. redis.call('TIME')[1] .. '000')
end
-- Per event, for a replay's counts: one ZADD per event and board.
local function write_boards(at, count, event, hidden)
  local changed = {}
  for i = 0, count - 1 do
    local score, member = event(i)
    local n = 0
    if not hidden[member] then
      for p = 0, 2 do
        local k = tonumber(ARGV[at + 3 * i + p])
        if k > 0 then n = n + redis.call('ZADD', KEYS[k], 'CH', score, member) end
      end
    end
    changed[i + 1] = n
  end
  set_expiries(at, count)
  return changed
end
-- Per board, for the consumer's batches: one ZADD per board (a batch's events mostly share
-- their day, week and month), in chunks within Lua's stack. Returns how many entries changed.
local function write_boards_grouped(at, count, event, hidden)
  local per_board = {}
  for i = 0, count - 1 do
    local score, member = event(i)
    if not hidden[member] then
      for p = 0, 2 do
        local k = tonumber(ARGV[at + 3 * i + p])
        if k > 0 then
          local args = per_board[k]
          if not args then args = {}; per_board[k] = args end
          args[#args + 1] = score
          args[#args + 1] = member
        end
      end
    end
  end
  local changed = 0
  for k, args in pairs(per_board) do
    for j = 1, #args, 1000 do
      changed = changed + redis.call('ZADD', KEYS[k], 'CH', unpack(args, j, math.min(j + 999, #args)))
    end
  end
  set_expiries(at, count)
  return changed
end
