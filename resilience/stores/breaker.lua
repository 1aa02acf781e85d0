-- One circuit-breaker step, atomic, on the Redis server's clock (TIME), in milliseconds.
-- The same rules as resilience/_circuit/state.py, with the window of resilience/_sliding.py
-- (time) or _circuit/window.py CountWindow (count), so a fleet shares one breaker.
--
-- KEYS[1]: state hash {st: 0 closed | 1 open | 2 half-open, g: generation, at: opened-at ms,
--          ok: trials passed}; KEYS[2]: window hash; KEYS[3..]: one lease key per half-open
--          trial slot (SET NX PX with the owner's token: a dead owner's slot expires).
-- ARGV[1]: op (a admit, r record, x release, p poll, o force open, c force close);
-- ARGV[2]: now_ms ("" = TIME; tests pin it);
-- ARGV[3]: the configuration, space-separated: failure_rate minimum_calls open_for_ms
--          slow_rate (< 0: slow calls do not count) window_ms window_calls (0: time window)
--          slices lease_ms ttl_ms;
-- ARGV[4]: the permit, space-separated: generation slot (0: closed permit) token failed slow.
-- (Two packed strings instead of 14 arguments: encoding arguments is most of a client's cost.)
-- Returns one string: "verdict state generation slot retry_ms calls failures slow changes",
-- verdict C (closed permit), T (trial permit), R (rejected) or - ; changes "-" or the digit
-- pairs of the transitions made ("12": open -> half-open).
local state_key, window_key = KEYS[1], KEYS[2]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
end
local config, permit = {}, {}
for part in string.gmatch(ARGV[3], '%S+') do config[#config + 1] = part end
for part in string.gmatch(ARGV[4], '%S+') do permit[#permit + 1] = part end
local failure_rate = tonumber(config[1])
local minimum_calls = tonumber(config[2])
local open_for = tonumber(config[3])
local slow_rate = tonumber(config[4])
local window_ms = tonumber(config[5])
local window_calls = tonumber(config[6])
local slices = tonumber(config[7])
local lease = config[8]
local ttl = config[9]
local token = permit[3]
local trials = #KEYS - 2

local fields = redis.call('HMGET', state_key, 'st', 'g', 'at', 'ok')
local st = tonumber(fields[1]) or 0
local gen = tonumber(fields[2]) or 0
local opened_at = tonumber(fields[3]) or 0
local passed = tonumber(fields[4]) or 0
local changes = ''
local calls, failures, slow = 0, 0, 0

local function reply(verdict, slot, retry)
  if changes == '' then changes = '-' end
  return string.format('%s %d %d %d %.3f %d %d %d %s', verdict, st, gen, slot, retry,
    calls, failures, slow, changes)
end

local function save()
  redis.call('HSET', state_key, 'st', st, 'g', gen, 'at', string.format('%.3f', opened_at),
    'ok', passed)
  redis.call('PEXPIRE', state_key, ttl)
end

-- Every transition: a new generation, an empty window, no trials.
local function move(new)
  changes = changes .. st .. new
  st, gen, passed = new, gen + 1, 0
  if new == 1 then opened_at = now end
  redis.call('DEL', window_key)
  for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
  calls, failures, slow = 0, 0, 0
  save()
end

-- Move the time window to now (SlidingCounters.advance); return the current slice's index.
local function advance()
  local width = window_ms / slices
  local ring = slices + 1
  local v = redis.call('HMGET', window_key, 'n', 'C', 'F', 'S')
  local newest = tonumber(v[1])
  calls, failures, slow = tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0
  local current = math.floor(now / width)
  if newest ~= nil and current <= newest then
    return newest % ring -- still in the newest slice (or a pinned clock stepped back)
  end
  if newest == nil or current - newest >= ring then
    redis.call('DEL', window_key)
    calls, failures, slow = 0, 0, 0
  else
    for absolute = newest + 1, current do
      local i = absolute % ring
      local old = redis.call('HMGET', window_key, 'c' .. i, 'f' .. i, 's' .. i)
      calls = calls - (tonumber(old[1]) or 0)
      failures = failures - (tonumber(old[2]) or 0)
      slow = slow - (tonumber(old[3]) or 0)
      redis.call('HDEL', window_key, 'c' .. i, 'f' .. i, 's' .. i)
    end
  end
  redis.call('HSET', window_key, 'n', string.format('%.0f', current), 'C', calls, 'F', failures,
    'S', slow)
  redis.call('PEXPIRE', window_key, ttl)
  return current % ring
end

local function refresh()
  if window_calls > 0 then
    local v = redis.call('HMGET', window_key, 'C', 'F', 'S')
    calls, failures, slow = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  else
    advance()
  end
end

-- Add one outcome to the window (closed state); open when a threshold is reached.
local function count(failed, was_slow)
  if window_calls > 0 then
    local v = redis.call('HMGET', window_key, 'x', 'C', 'F', 'S')
    local position = tonumber(v[1]) or 0
    calls, failures, slow = tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0
    local evicted = tonumber(redis.call('HGET', window_key, 'r' .. position)) or 0
    if evicted > 0 then
      calls = calls - 1
      failures = failures - evicted % 2
      slow = slow - math.floor(evicted / 2) % 2
    end
    calls, failures, slow = calls + 1, failures + failed, slow + was_slow
    redis.call('HSET', window_key, 'r' .. position, 4 + failed + 2 * was_slow,
      'x', (position + 1) % window_calls, 'C', calls, 'F', failures, 'S', slow)
  else
    local i = advance()
    redis.call('HINCRBY', window_key, 'c' .. i, 1)
    if failed == 1 then redis.call('HINCRBY', window_key, 'f' .. i, 1) end
    if was_slow == 1 then redis.call('HINCRBY', window_key, 's' .. i, 1) end
    calls, failures, slow = calls + 1, failures + failed, slow + was_slow
    redis.call('HSET', window_key, 'C', calls, 'F', failures, 'S', slow)
  end
  redis.call('PEXPIRE', window_key, ttl)
  redis.call('PEXPIRE', state_key, ttl)
  if calls >= minimum_calls and (failures / calls >= failure_rate
      or (slow_rate >= 0 and slow / calls >= slow_rate)) then
    move(1)
  end
end

if op == 'a' then
  if st == 1 then
    if now - opened_at < open_for then
      return reply('R', 0, opened_at + open_for - now)
    end
    move(2)
  end
  if st == 2 then
    for i = 3, #KEYS do
      if redis.call('SET', KEYS[i], token, 'NX', 'PX', lease) then
        return reply('T', i - 2, 0)
      end
    end
    return reply('R', 0, 0)
  end
  return reply('C', 0, 0)
end

if op == 'r' or op == 'x' then
  local permit_gen, slot = tonumber(permit[1]), tonumber(permit[2])
  if permit_gen ~= gen then
    return reply('-', 0, 0) -- a late result from an earlier state (or a forgotten breaker)
  end
  if slot > 0 then
    local lease_key = KEYS[2 + slot]
    if st ~= 2 or redis.call('GET', lease_key) ~= token then
      return reply('-', 0, 0) -- the lease expired: this caller no longer owns the trial
    end
    redis.call('DEL', lease_key)
    if op == 'x' then return reply('-', 0, 0) end
    if permit[4] == '1' or (permit[5] == '1' and slow_rate >= 0) then
      move(1)
    else
      passed = passed + 1
      if passed >= trials then move(0) else save() end
    end
  elseif op == 'r' and st == 0 then
    count(tonumber(permit[4]), tonumber(permit[5]))
  end
  return reply('-', 0, 0)
end

if op == 'p' then
  if st == 1 and now - opened_at >= open_for then move(2) end
  refresh()
  local retry = 0
  if st == 1 then retry = opened_at + open_for - now end
  return reply('-', 0, retry)
end

-- o / c: by hand. Forcing the current state is no transition but still does what was asked.
local target = 0
if op == 'o' then target = 1 end
if st ~= target then
  move(target)
elseif target == 1 then
  opened_at = now
  save()
else
  redis.call('DEL', window_key)
end
return reply('-', 0, 0)
