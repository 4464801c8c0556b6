-- Publishes a sale state staged by a loader, unless another loader published
-- first. Writes that reached the live keys since the data was lost (purchases
-- completing) are merged: sold bits are OR-ed, bought counts keep the maximum.
-- KEYS: ready, sold, bought, cart, cartn, cartitems, codes,
--       then the six staged keys in the same order
-- ARGV: expire-at (unix seconds)
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 8, 13 do
    redis.call('DEL', KEYS[i])
  end
  return 0
end
redis.call('BITOP', 'OR', KEYS[8], KEYS[8], KEYS[2])
local live = redis.call('HGETALL', KEYS[3])
for i = 1, #live, 2 do
  local staged = tonumber(redis.call('HGET', KEYS[9], live[i]) or '0')
  if tonumber(live[i + 1]) > staged then
    redis.call('HSET', KEYS[9], live[i], live[i + 1])
  end
end
for i = 2, 7 do
  if redis.call('EXISTS', KEYS[i + 6]) == 1 then
    redis.call('RENAME', KEYS[i + 6], KEYS[i])
    redis.call('EXPIREAT', KEYS[i], ARGV[1])
  else
    redis.call('DEL', KEYS[i])
  end
end
local t = redis.call('TIME')
redis.call('SET', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 1
