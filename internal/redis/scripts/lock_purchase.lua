-- Takes the purchase lock of code ARGV[1] with token ARGV[2] for ARGV[3] ms,
-- and says whether the cache knows the code. A code it does not know may
-- still be one the database holds (the cache lost data or went back in time),
-- so it is looked up there — unless the client's budget of codes the database
-- did not know either (ARGV[4] per window, counted in KEYS[3]) is spent. Run
-- twice with one token, it answers the same.
-- KEYS: codes, lock, misses of the client
-- ARGV: code, token, lock ttl (ms), miss budget
-- Returns {status, known (0/1), ms until the miss budget is back}.
local known = redis.call('HEXISTS', KEYS[1], ARGV[1])
if known == 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[4]) then
  return {'rate_limited', 0, redis.call('PTTL', KEYS[3])}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) or redis.call('GET', KEYS[2]) == ARGV[2] then
  return {'ok', known, 0}
end
return {'busy', known, 0}
