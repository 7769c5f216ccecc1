-- One instance's share of a room's presence, kept with a TTL, and the
-- others' shares summed.
-- KEYS[1]: the room's index of instances (a sorted set: instance -> the
-- Redis time, in ms, its share expires at); KEYS[2]: this instance's share
-- (a hash: user_id -> connections), always KEYS[1] .. ':' .. ARGV[1].
-- ARGV[1]: this instance; ARGV[2]: PRESENCE_TTL in ms; ARGV[3]: 'r' to
-- replace the share with the user_id, connections pairs of ARGV[4..], 'k'
-- to keep it (refresh its TTL), 'x' to drop it (the instance left the
-- room), 'p' to write nothing (peek at every share).
-- Returns user_id, connections, ... summed over every live instance but
-- this one. Every key shares the room's hash tag: one Cluster slot.
local index, mine = KEYS[1], KEYS[2]
local me, ttl, mode = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

if mode == 'x' then
  redis.call('DEL', mine)
  redis.call('ZREM', index, me)
elseif mode ~= 'p' then
  if mode == 'r' then
    redis.call('DEL', mine)
    -- unpack() is bounded by Lua's C stack: 500 pairs at a time.
    for first = 4, #ARGV, 1000 do
      redis.call('HSET', mine, unpack(ARGV, first, math.min(first + 999, #ARGV)))
    end
  end
  if redis.call('PEXPIRE', mine, ttl) == 1 then
    redis.call('ZADD', index, now + ttl, me)
  else
    redis.call('ZREM', index, me)
  end
  -- Instances that stopped refreshing (killed, cut off) drop out.
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('PEXPIRE', index, ttl)
end

local sums, users = {}, {}
for _, other in ipairs(redis.call('ZRANGEBYSCORE', index, '(' .. now, '+inf')) do
  if other ~= me then
    local share = redis.call('HGETALL', index .. ':' .. other)
    for i = 1, #share, 2 do
      local user = share[i]
      if sums[user] == nil then
        sums[user] = 0
        users[#users + 1] = user
      end
      sums[user] = sums[user] + tonumber(share[i + 1])
    end
  end
end
local result = {}
for _, user in ipairs(users) do
  result[#result + 1] = user
  result[#result + 1] = sums[user]
end
return result
