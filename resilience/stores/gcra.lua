-- One GCRA step, atomic, on the Redis server's clock (TIME), in nanoseconds.
-- KEYS[1]: the limit's TAT key (ns since the epoch, an integer as text).
-- ARGV[1]: increment = emission interval x cost, ns; ARGV[2]: the admission limit, ns
-- (tolerance + max_wait + a nanosecond of slack for rounding); ARGV[3]: the key's TTL in ms,
-- at least the limit (a stored TAT is never further ahead of now).
-- Returns one integer: ahead = new TAT - now, in ns, when admitted (the TAT is stored), or
-- -1 - ahead when refused; the client derives the decision's numbers from it.
-- Parsing and formatting numbers is most of a script's cost, so the script parses only what
-- it must, stores the TAT as an integer (%d costs a third of %.6f; a double of ns since the
-- epoch is exact to 256 ns either way) and answers with an integer (no formatting at all).
local time = redis.call('TIME')
local now = time[1] * 1000000000 + time[2] * 1000
local tat = tonumber(redis.call('GET', KEYS[1]))
local increment = tonumber(ARGV[1])
-- ahead from small numbers: (now + increment) - now would carry the rounding of the big sum
local ahead = increment
if tat and tat > now then
  ahead = (tat - now) + increment
else
  tat = now
end
if ahead <= tonumber(ARGV[2]) then
  if increment > 0 then
    redis.call('SET', KEYS[1], string.format('%d', tat + increment), 'PX', ARGV[3])
  end
  return math.floor(ahead + 0.5)
end
return -1 - math.floor(ahead + 0.5)
