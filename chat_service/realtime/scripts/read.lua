-- Read a room's position and history, atomically with its publishes.
-- KEYS and ARGV 1-2: room_state.lua's. ARGV 3: HISTORY_TTL in seconds;
-- ARGV 4: 'after', 'before' or 'position' (no frames); ARGV 5: a seq
-- ('' for 'before': from the newest); ARGV 6: how many frames at most.
-- Returns the epoch, the latest seq, then the frames: for 'after', those
-- with a larger seq, oldest first, with each range of numbers a failover
-- skipped (see publish.lua) that ends after ARGV 5 as '~first-last' in its
-- place; for 'before', those with a smaller one, newest first, skips left
-- out. Frames older than HISTORY_TTL are left out.
local ttl, mode, from, count = tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])
local oldest_kept = now_ms - ttl * 1000
local results = {epoch, tonumber(redis.call('GET', seq_key))}

-- A stream entry is a frame ('f', frame, 't', ms) or a skip ('s', last, 't', ms).
local function kept(entry)
  return tonumber(entry[2][4]) >= oldest_kept
end

local function skip(entry)
  return '~' .. string.match(entry[1], '^(%d+)') .. '-' .. entry[2][2]
end

if mode == 'after' then
  local since = tonumber(from)
  -- A skip that began at or before `since` may still run past it.
  local before = redis.call('XREVRANGE', history_key, since .. '-0', '-', 'COUNT', 1)[1]
  if before and before[2][1] == 's' and tonumber(before[2][2]) > since and kept(before) then
    results[#results + 1] = skip(before)
  end
  local entries = redis.call('XRANGE', history_key, (since + 1) .. '-0', '+', 'COUNT', count)
  for _, entry in ipairs(entries) do
    if kept(entry) then
      results[#results + 1] = entry[2][1] == 's' and skip(entry) or entry[2][2]
    end
  end
elseif mode == 'before' then
  local top = from == '' and '+' or (tonumber(from) - 1) .. '-0'
  local found = 0
  while found < count do
    local entries = redis.call('XREVRANGE', history_key, top, '-', 'COUNT', count - found)
    if #entries == 0 then
      break
    end
    for _, entry in ipairs(entries) do
      if not kept(entry) then
        return results -- older entries are older still
      end
      if entry[2][1] == 'f' then
        results[#results + 1] = entry[2][2]
        found = found + 1
      end
    end
    top = '(' .. entries[#entries][1]
  end
end
return results
