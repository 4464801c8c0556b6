-- Records that code ARGV[2] is the open cart of user ARGV[1], when the
-- database chose another cart than the cache named.
-- KEYS: cart, codes
-- ARGV: user, code, expire-at (unix seconds)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
redis.call('EXPIREAT', KEYS[2], ARGV[3])
return 1
