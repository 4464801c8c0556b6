-- A checkout's fast path. Turns away item ARGV[2] when it is sold, and user
-- ARGV[1] when the items it bought reach the limit ARGV[4]: facts the database
-- committed (a cache that lost data or went back in time knows fewer of them,
-- never false ones). Otherwise returns the code of the user's open cart as
-- the cache knows it, opening it as ARGV[3] when the cache knows none: a hint
-- the database confirms or corrects. Run twice, it answers the same.
-- KEYS: ready, sold, bought, cart, codes
-- ARGV: user, seq, new code, limit, expire-at (unix seconds)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'not_loaded'}
end
if redis.call('GETBIT', KEYS[2], ARGV[2]) == 1 then
  return {'item_sold'}
end
if tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0') >= tonumber(ARGV[4]) then
  return {'user_limit_reached'}
end
local code = redis.call('HGET', KEYS[4], ARGV[1])
if not code then
  code = ARGV[3]
  redis.call('HSET', KEYS[4], ARGV[1], code)
  redis.call('HSET', KEYS[5], code, ARGV[1])
  redis.call('EXPIREAT', KEYS[4], ARGV[5])
  redis.call('EXPIREAT', KEYS[5], ARGV[5])
end
return {'ok', code}
