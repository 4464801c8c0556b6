-- Releases a lock only if token ARGV[1] still holds it: a lock that expired
-- and was taken by another holder is not ours to delete.
-- KEYS: lock
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
