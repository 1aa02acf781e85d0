-- One GCRA step, atomic, on the Redis server's clock (TIME), in milliseconds.
-- KEYS[1]: the limit's TAT key (ms since the epoch, as text).
-- ARGV[1]: increment_ms = emission interval x cost; ARGV[2]: limit_ms = tolerance + max_wait;
-- ARGV[3]: the key's TTL in ms, at least limit_ms (a stored TAT is never further ahead).
-- Returns one integer: ahead = new TAT - now, in nanoseconds, when admitted (the TAT is
-- stored), or -1 - ahead when refused; the client derives the decision's numbers from it.
-- Parsing and formatting numbers is most of a script's cost here, so the script parses only
-- what it must, formats only the TAT, and answers with an integer (no formatting at all).
local time = redis.call('TIME')
local now = time[1] * 1000 + time[2] / 1000
local tat = tonumber(redis.call('GET', KEYS[1]))
local increment = tonumber(ARGV[1])
-- ahead from small numbers: (now + increment) - now would carry the rounding of a 13-digit sum
local ahead = increment
if tat and tat > now then
  ahead = (tat - now) + increment
else
  tat = now
end
if ahead <= tonumber(ARGV[2]) + 0.000001 then
  if increment > 0 then
    redis.call('SET', KEYS[1], string.format('%.6f', tat + increment), 'PX', ARGV[3])
  end
  return math.floor(ahead * 1000000 + 0.5)
end
return -1 - math.floor(ahead * 1000000 + 0.5)
