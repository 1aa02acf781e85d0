-- One idempotency record (resilience._idempotency), atomically: KEYS[1] is a hash with the
-- payload fingerprint "fp", the owner token "token" while the request runs, and the stored
-- response "resp" once it is done. Its TTL is the lease while running (so a record whose
-- owner died vanishes on Redis's own clock) and the retention time once done.
--   claim    ARGV: "claim", fingerprint, lease_ms, new_token -> {"claimed"} | {"mismatch"}
--            | {"in_progress"} | {"replay", response}
--   renew    ARGV: "renew", fingerprint, token, lease_ms          -> 1 renewed, 0 lost
--   complete ARGV: "complete", fingerprint, token, response, ttl_ms -> 1 stored, 0 lost
--   release  ARGV: "release", token                              -> 1 released, 0 otherwise
-- renew and complete are fenced by the token: they act only on the claim that token holds.
-- A record that vanished (its lease ran out unseen, or Redis restarted empty) is taken again
-- with the same token: nobody else holds the key, and the request is still running or done.
local key = KEYS[1]
local op = ARGV[1]
if op == "claim" then
  local found = redis.call("HMGET", key, "fp", "resp")
  if not found[1] then
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
