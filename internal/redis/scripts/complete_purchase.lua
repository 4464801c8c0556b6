-- Records a committed purchase: its items are sold, the user's bought count is
-- the database's (never lowered by an out-of-order completion), the code is
-- known, the cart is closed so the user's next checkout opens a new one, and
-- the lock is released. Run twice, it leaves the same state.
-- KEYS: sold, bought, cart, codes, lock
-- ARGV: user, code, token, bought, expire-at, sold seq...
for i = 6, #ARGV do
  redis.call('SETBIT', KEYS[1], ARGV[i], 1)
end
local bought = tonumber(ARGV[4])
if bought > tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then
  redis.call('HSET', KEYS[2], ARGV[1], bought)
end
if redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[3], ARGV[1])
end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
for i = 1, 4 do
  redis.call('EXPIREAT', KEYS[i], ARGV[5])
end
if redis.call('GET', KEYS[5]) == ARGV[3] then
  redis.call('DEL', KEYS[5])
end
return 1
