-- Takes one from a client's budget of codes the database did not know; the
-- budget is whole again ARGV[1] ms after its first miss.
-- KEYS: misses of the client
-- ARGV: window (ms)
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
