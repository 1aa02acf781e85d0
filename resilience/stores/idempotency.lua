-- One idempotency record (resilience._idempotency), atomically: KEYS[1] is a hash with the
-- payload fingerprint "fp", the owner token "token" while the request runs, and the stored
-- response "resp" once it is done. Its TTL is the lease while running (so a record whose
-- owner died vanishes on Redis's own clock) and the retention time once done.
--   claim    ARGV: "claim", fingerprint, lease_ms, new_token, fence_s -> {"claimed"}
--            | {"mismatch"} | {"in_progress"} | {"replay", response} | {"fenced", seconds_left}
--   renew    ARGV: "renew", fingerprint, token, lease_ms          -> 1 renewed, 0 lost
--   complete ARGV: "complete", fingerprint, token, response, ttl_ms -> 1 stored, 0 lost
--   release  ARGV: "release", token                              -> 1 released, 0 otherwise
-- renew and complete are fenced by the token: they act only on the claim that token holds.
-- A record that vanished (its lease ran out unseen, or Redis restarted empty) is taken again
-- with the same token: nobody else holds the key, and the request is still running or done.
-- The restart fence: a Redis that restarted (empty, or from a snapshot older than the claims)
-- has lost the records of requests still running; their heartbeats take them back within a
-- beat (<= 1 s). Until this server has been up fence_s seconds, an ABSENT record is not
-- claimed ({"fenced", seconds left}): it may belong to a running request. Present records
-- are answered as always. Uptime is the server's own (INFO), so every node of a Cluster
-- fences its own slots, and no client clock is involved.
local key = KEYS[1]
local op = ARGV[1]
if op == "claim" then
  local found = redis.call("HMGET", key, "fp", "resp")
  if not found[1] then
    local uptime = tonumber(string.match(redis.call("INFO", "server"), "uptime_in_seconds:(%d+)"))
    local fence = tonumber(ARGV[5])
    if uptime and uptime < fence then
      return {"fenced", tostring(fence - uptime)}
    end
    redis.call("HSET", key, "fp", ARGV[2], "token", ARGV[4])
    redis.call("PEXPIRE", key, ARGV[3])
    return {"claimed"}
  end
  if found[1] ~= ARGV[2] then
    return {"mismatch"}
  end
  if found[2] then
    return {"replay", found[2]}
  end
  return {"in_progress"}
end
if op == "release" then
  local found = redis.call("HMGET", key, "token", "resp")
  if found[1] ~= ARGV[2] or found[2] then
    return 0
  end
  redis.call("DEL", key)
  return 1
end
local found = redis.call("HMGET", key, "token", "resp")
if not found[1] and not found[2] then
  redis.call("HSET", key, "fp", ARGV[2], "token", ARGV[3])
elseif found[1] ~= ARGV[3] or found[2] then
  return 0
end
if op == "renew" then
  redis.call("PEXPIRE", key, ARGV[4])
  return 1
end
redis.call("HSET", key, "resp", ARGV[4])
redis.call("HDEL", key, "token")
redis.call("PEXPIRE", key, ARGV[5])
return 1
