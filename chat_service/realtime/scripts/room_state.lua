-- The prelude of publish.lua and read.lua (loaded in front of each).
-- KEYS: 1 seq counter, 2 epoch, 3 history stream, 4 dedupe zset (one hash tag: one slot).
-- ARGV[1]: a fresh epoch, used if the room's counter or epoch is missing;
-- ARGV[2]: the counter's and epoch's TTL in seconds.
-- A missing counter or epoch means the room's count was lost (or never
-- began): both start again, in a new epoch, with no history to mix in.
local seq_key, epoch_key, history_key, dedupe_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local counter_ttl = tonumber(ARGV[2])
local epoch = redis.call('GET', epoch_key)
if not epoch or redis.call('EXISTS', seq_key) == 0 then
  epoch = ARGV[1]
  redis.call('DEL', history_key, dedupe_key)
  redis.call('SET', epoch_key, epoch, 'EX', counter_ttl)
  redis.call('SET', seq_key, 0, 'EX', counter_ttl)
end
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
