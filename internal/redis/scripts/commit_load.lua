-- Publishes a sale state staged by a loader, unless another loader published
-- first. Writes that reached the live keys since the data was lost are
-- merged: sold bits are OR-ed, bought counts keep the maximum, codes are
-- added; carts named since then are dropped (hints: the database has the
-- open carts).
-- KEYS: ready, sold, bought, cart, codes,
--       then the four staged keys in the same order
-- ARGV: expire-at (unix seconds)
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 6, 9 do
    redis.call('DEL', KEYS[i])
  end
  return 0
end
redis.call('BITOP', 'OR', KEYS[6], KEYS[6], KEYS[2])
local live = redis.call('HGETALL', KEYS[3])
for i = 1, #live, 2 do
  local staged = tonumber(redis.call('HGET', KEYS[7], live[i]) or '0')
  if tonumber(live[i + 1]) > staged then
    redis.call('HSET', KEYS[7], live[i], live[i + 1])
  end
end
live = redis.call('HGETALL', KEYS[5])
for i = 1, #live, 2 do
  redis.call('HSETNX', KEYS[9], live[i], live[i + 1])
end
for i = 2, 5 do
  if redis.call('EXISTS', KEYS[i + 4]) == 1 then
    redis.call('RENAME', KEYS[i + 4], KEYS[i])
    redis.call('EXPIREAT', KEYS[i], ARGV[1])
  else
    redis.call('DEL', KEYS[i])
  end
end
redis.call('SET', KEYS[1], 1)
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 1
