-- A checkout's fast path. First takes one checkout from user ARGV[1]'s budget
-- when ARGV[6] (seconds between checkouts) is not 0: GCRA, as
-- github.com/go-redis/redis_rate decides it, with bursts of ARGV[7]; a spent
-- budget answers how many seconds until the next checkout may go. Then turns
-- away item ARGV[2] when it is sold, and the user when the items it bought
-- reach the limit ARGV[4]: facts the database committed (a cache that lost
-- data or went back in time knows fewer of them, never false ones).
-- Otherwise returns the code of the user's open cart as the cache knows it,
-- opening it as ARGV[3] when the cache knows none: a hint the database
-- confirms or corrects. Run twice, it answers the same, and charges the
-- budget twice.
-- KEYS: ready, sold, bought, cart, codes[, the user's budget]
-- ARGV: user, seq, new code, limit, expire-at (unix seconds)[, interval, burst]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'not_loaded'}
end
local interval = tonumber(ARGV[6] or '0')
if interval > 0 then
  -- Seconds since 2023-11-14: small enough that tostring keeps microseconds.
  local t = redis.call('TIME')
  local now = (tonumber(t[1]) - 1700000000) + tonumber(t[2]) / 1000000
  -- The theoretical arrival time of the next checkout: the budget is spent
  -- while it lies more than burst intervals ahead of now.
  local tat = math.max(tonumber(redis.call('GET', KEYS[6]) or now), now) + interval
  local wait = tat - interval * tonumber(ARGV[7]) - now
  if wait > 0 then
    return {'rate_limited', tostring(wait)}
  end
  redis.call('SET', KEYS[6], tostring(tat), 'PX', math.ceil((tat - now) * 1000))
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
