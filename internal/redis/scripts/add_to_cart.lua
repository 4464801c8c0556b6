-- Adds item ARGV[2] to the open cart of user ARGV[1], opening one with code
-- ARGV[3] when the user has none. Atomic, so two checkouts of one user cannot
-- both take the last place under the limit ARGV[4].
-- KEYS: ready, sold, bought, cart, cartn, cartitems, codes
-- ARGV: user, seq, new code, limit, expire-at (unix seconds)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'not_loaded'}
end
local user, seq, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
if redis.call('GETBIT', KEYS[2], seq) == 1 then
  return {'item_sold'}
end
local bought = tonumber(redis.call('HGET', KEYS[3], user) or '0')
if bought >= limit then
  return {'user_limit_reached'}
end
local code = redis.call('HGET', KEYS[4], user)
local n = 0
if code then
  n = tonumber(redis.call('HGET', KEYS[5], code) or '0')
  if redis.call('SISMEMBER', KEYS[6], code .. ':' .. seq) == 1 then
    return {'already_in_cart'}
  end
  if bought + n >= limit then
    return {'user_limit_reached'}
  end
else
  code = ARGV[3]
  redis.call('HSET', KEYS[4], user, code)
  redis.call('HSET', KEYS[7], code, user)
  redis.call('EXPIREAT', KEYS[4], ARGV[5])
  redis.call('EXPIREAT', KEYS[7], ARGV[5])
end
redis.call('SADD', KEYS[6], code .. ':' .. seq)
n = redis.call('HINCRBY', KEYS[5], code, 1)
redis.call('EXPIREAT', KEYS[5], ARGV[5])
redis.call('EXPIREAT', KEYS[6], ARGV[5])
return {'ok', code, n}
