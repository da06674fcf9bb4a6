local function greater(x, y)
  if #x ~= #y then return #x > #y end
  return x > y
end
local function id_after(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  if a_ms ~= b_ms then return greater(a_ms, b_ms) end
  return greater(a_seq, b_seq)
end
-- The feed's last ID ever added, and the last one trimmed away ('0-0' for none).
local function feed_ids(feed)
  local last, trimmed = '0-0', '0-0'
  if redis.call('EXISTS', feed) == 0 then return last, trimmed end
  local info = redis.call('XINFO', 'STREAM', feed)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
    if info[i] == 'max-deleted-entry-id' then trimmed = info[i + 1] end
  end
  return last, trimmed
end
-- An error reply if the feed holds something else than a stream (checked before any write:
-- Redis does not roll a script back).
local function feed_type_error(feed)
  local found = redis.call('TYPE', feed).ok
  if found ~= 'none' and found ~= 'stream' then
    return redis.error_reply('WRONGTYPE ' .. feed .. ' holds a ' .. found .. ', expected a stream')
  end
end
-- The last log position the feed has announced, its `last` ID when that is one. A reset's own
-- ID may not be a log position (Redis took the next sequence number): it names the position
-- before it in its `after` field.
local function last_position(feed, last)
  local tail = redis.call('XREVRANGE', feed, '+', '-', 'COUNT', 1)[1]
  if not tail or tail[1] ~= last or tail[2][1] ~= 'reset' then return last end
  for i = 3, #tail[2], 2 do
    if tail[2][i] == 'after' then return tail[2][i + 1] end
  end
  return last
end
-- Tells every reader to read the board again, for a change no entry describes (a replay, a
-- swap, a heal): a `reset` just after the feed's last ID, under the same transaction id
-- ('<tx_id>-*': Redis takes the next sequence number), so the IDs still follow the log. That
-- ID may be a later row's of the same transaction, so the reset keeps the last position
-- announced (or `after`, when given) for the apply script to tell new rows from old.
local function announce_reset(feed, max_len, after)
  local last = feed_ids(feed)
  after = after or last_position(feed, last)
  local ms = string.match(last, '^(%d+)-')
  redis.call('XADD', feed, 'MAXLEN', '~', max_len, ms .. '-*', 'reset', 0, 'after', after)
end
