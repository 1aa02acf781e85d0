-- One retry-budget step, atomic, on the Redis server's clock (TIME), in milliseconds.
-- The counters of resilience/_sliding.py (first attempts, retries) and the allowance of
-- resilience/_retry/budget.py, so a fleet shares one budget.
-- KEYS[1]: the budget's hash {n: newest slice, A, R: totals, a<i>, r<i>: per ring slice}.
-- ARGV: op (a record an attempt, s try to spend, v available), now_ms ("" = TIME), window_ms,
--       slices, ratio, reserve (min_retries_per_second * window), ttl_ms.
-- Returns "spent allowance": spent is 1 when op s took a retry; allowance is what is left.
local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
end
local slices = tonumber(ARGV[4])
local width = tonumber(ARGV[3]) / slices
local ring = slices + 1
local ratio = tonumber(ARGV[5])
local reserve = tonumber(ARGV[6])
local ttl = ARGV[7]

-- Move the window to now (SlidingCounters.advance).
local v = redis.call('HMGET', key, 'n', 'A', 'R')
local newest = tonumber(v[1])
local attempts, retries = tonumber(v[2]) or 0, tonumber(v[3]) or 0
local current = math.floor(now / width)
local index
if newest ~= nil and current <= newest then
  index = newest % ring -- still in the newest slice (or a pinned clock stepped back)
else
  if newest == nil or current - newest >= ring then
    redis.call('DEL', key)
    attempts, retries = 0, 0
  else
    for absolute = newest + 1, current do
      local i = absolute % ring
      local old = redis.call('HMGET', key, 'a' .. i, 'r' .. i)
      attempts = attempts - (tonumber(old[1]) or 0)
      retries = retries - (tonumber(old[2]) or 0)
      redis.call('HDEL', key, 'a' .. i, 'r' .. i)
    end
  end
  index = current % ring
  redis.call('HSET', key, 'n', string.format('%.0f', current), 'A', attempts, 'R', retries)
  redis.call('PEXPIRE', key, ttl)
end

-- Whole retries earned minus those spent; the float slack as in budget.py.
local function allowance()
  return math.floor((reserve + ratio * attempts) * (1.0 + 1e-12) + 1e-9) - retries
end

if op == 'a' then
  redis.call('HINCRBY', key, 'a' .. index, 1)
  attempts = attempts + 1
  redis.call('HSET', key, 'A', attempts)
  redis.call('PEXPIRE', key, ttl)
  return string.format('0 %d', allowance())
end
if op == 's' then
  if allowance() < 1 then
    return string.format('0 %d', allowance())
  end
  redis.call('HINCRBY', key, 'r' .. index, 1)
  retries = retries + 1
  redis.call('HSET', key, 'R', retries)
  redis.call('PEXPIRE', key, ttl)
  return string.format('1 %d', allowance())
end
return string.format('0 %d', allowance())
