-- Takes the purchase lock of code ARGV[1] with token ARGV[2] for ARGV[3] ms.
-- A code the loaded state does not know is rejected, unless the state was
-- loaded less than ARGV[4] ms ago: attempts acknowledged just before a load
-- may reach the database after it read.
-- KEYS: ready, codes, lock
local ready = redis.call('GET', KEYS[1])
if ready then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if now - tonumber(ready) > tonumber(ARGV[4]) and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
    return 'code_not_found'
  end
end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 'ok'
end
return 'busy'
