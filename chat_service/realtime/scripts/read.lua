-- Read a room's position and history, atomically with its publishes.
-- KEYS and ARGV 1-2: room_state.lua's. ARGV 3: HISTORY_TTL in seconds;
-- ARGV 4: 'after', 'before' or 'position' (no frames); ARGV 5: a seq
-- ('' for 'before': from the newest); ARGV 6: how many frames at most.
-- Returns the epoch, the latest seq, then the frames: for 'after', those
-- with a larger seq, oldest first; for 'before', those with a smaller
-- one, newest first. Frames older than HISTORY_TTL are left out.
local ttl, mode, from, count = tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local oldest_kept = now_ms - ttl * 1000
local entries = {}
if mode == 'after' then
  entries = redis.call('XRANGE', history_key, (tonumber(from) + 1) .. '-0', '+', 'COUNT', count)
elseif mode == 'before' and from == '' then
  entries = redis.call('XREVRANGE', history_key, '+', '-', 'COUNT', count)
elseif mode == 'before' then
  entries = redis.call('XREVRANGE', history_key, (tonumber(from) - 1) .. '-0', '-', 'COUNT', count)
end
local results = {epoch, tonumber(redis.call('GET', seq_key))}
for _, entry in ipairs(entries) do
  if tonumber(entry[2][4]) >= oldest_kept then
    results[#results + 1] = entry[2][2]
  end
end
return results
