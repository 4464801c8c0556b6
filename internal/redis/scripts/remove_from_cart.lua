-- Undoes an add to cart whose attempt could not be persisted.
-- KEYS: cartn, cartitems
-- ARGV: code, seq
if redis.call('SREM', KEYS[2], ARGV[1] .. ':' .. ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
end
return 1
