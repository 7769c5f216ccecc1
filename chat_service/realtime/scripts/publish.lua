-- Publish one batch of a room's payloads, in order, atomically: each chat
-- frame gets the room's next seq (spliced into the pre-encoded frame),
-- goes into the room's stream and out in one PUBLISH with the others.
-- KEYS: room_state.lua's, then 5 the room's channel, 6 the replication id
-- of the node that last wrote the room (cluster only).
-- ARGV: room_state.lua's, then 3 HISTORY_SIZE, 4 HISTORY_TTL (0: no
-- history, no dedupe), then per payload three: kind ('c' chat, 'e' any
-- other frame, published as is), the payload, the sender's dedupe key
-- (user_id .. '\n' .. client_msg_id, or '').
-- Returns the epoch, then per chat payload its seq, or the original
-- frame when the sender already sent this client_msg_id (not published).
-- The PUBLISHed message is '=' .. epoch, then the payloads, one per line.
-- `publish_command` (PUBLISH, or SPUBLISH on a cluster) is set in front of
-- the script by redis_history.publish_script.
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local chat_head = string.len('{"type":"chat",')
local oldest_kept = now_ms - ttl * 1000
local results = {epoch}
local lines = {'=' .. epoch}
local seq = tonumber(redis.call('GET', seq_key))
if publish_command == 'SPUBLISH' then
  -- On a cluster, a replica promoted by a failover may lack the old
  -- master's last writes, and their seqs were already delivered: skip a
  -- whole history's worth of numbers so none is ever given twice (clients
  -- see a gap, which recovery fills with what survived). The history
  -- records the skip, so recovery can tell it from lost messages.
  local info = redis.call('INFO', 'replication')
  local replid = string.match(info, 'master_replid:(%w+)')
  local known = redis.call('GET', KEYS[6])
  if known and known ~= replid then
    local first = seq + 1
    seq = redis.call('INCRBY', seq_key, size)
    if ttl > 0 then
      redis.call('XADD', history_key, 'MAXLEN', '~', size, first .. '-0', 's', seq, 't', now_ms)
    end
  end
  if known ~= replid then
    redis.call('SET', KEYS[6], replid)
  end
  redis.call('EXPIRE', KEYS[6], counter_ttl)
end
for i = 5, #ARGV, 3 do
  local kind, payload, sender = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if kind == 'e' then
    lines[#lines + 1] = payload
  else
    local original = false
    if sender ~= '' and ttl > 0 then
      local sent = redis.call('ZSCORE', dedupe_key, sender)
      if sent then
        local entry = redis.call('XRANGE', history_key, sent .. '-0', sent .. '-0')[1]
        if entry and tonumber(entry[2][4]) >= oldest_kept then
          original = entry[2][2]
        end
      end
    end
    if original then
      results[#results + 1] = original
    else
      seq = redis.call('INCR', seq_key)
      local framed = '{"type":"chat","seq":' .. seq .. ',' .. string.sub(payload, chat_head + 1)
      if ttl > 0 then
        redis.call('XADD', history_key, 'MAXLEN', '~', size, seq .. '-0', 'f', framed, 't', now_ms)
        if sender ~= '' then
          redis.call('ZADD', dedupe_key, seq, sender)
        end
      end
      lines[#lines + 1] = framed
      results[#results + 1] = seq
    end
  end
end
if ttl > 0 then
  -- Senders' ids only for messages still in history (at most HISTORY_SIZE).
  redis.call('ZREMRANGEBYSCORE', dedupe_key, '-inf', '(' .. (seq - size + 1))
  redis.call('EXPIRE', history_key, ttl)
  redis.call('EXPIRE', dedupe_key, ttl)
end
redis.call('EXPIRE', seq_key, counter_ttl)
redis.call('EXPIRE', epoch_key, counter_ttl)
if #lines > 1 then
  redis.call(publish_command, KEYS[5], table.concat(lines, '\n'))
end
return results
