-- One GCRA step, atomic, on the Redis server's clock (TIME), in milliseconds.
-- KEYS[1]: the limit's TAT key.  ARGV: emission_ms, tolerance_ms, cost, max_wait_ms.
-- Returns "allowed ttl_ms wait_ms retry_after_ms" as one string (one bulk reply is the cheapest
-- to parse, and Redis would truncate Lua numbers to integers).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local slack = 0.000001

local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then
  tat = now
end
local new_tat = tat + emission * cost
local allow_at = new_tat - tolerance
if allow_at <= now + max_wait + slack then
  local wait = 0
  if allow_at > now + slack then
    wait = allow_at - now
  end
  local ttl = new_tat - now
  if cost > 0 then
    redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.max(1, math.ceil(ttl)))
  end
  return string.format('1 %.3f %.3f 0', ttl, wait)
end
return string.format('0 %.3f 0 %.3f', tat - now, allow_at - now)
