-- One idempotency record (resilience._idempotency), atomically: KEYS[1] is a hash with the
-- payload fingerprint "fp", the owner token "token" while the request runs, and the stored
-- response "resp" once it is done. Its TTL is the lease while running (so a record whose
-- owner died vanishes on Redis's own clock) and the retention time once done.
--   claim    ARGV: "claim", fingerprint, lease_ms, new_token -> {"claimed"} | {"mismatch"}
--            | {"in_progress"} | {"replay", response}
--   complete ARGV: "complete", token, response, ttl_ms      -> 1 if stored, 0 if the claim was lost
--   release  ARGV: "release", token                          -> 1 if released, 0 otherwise
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
local found = redis.call("HMGET", key, "token", "resp")
if found[1] ~= ARGV[2] or found[2] then
  return 0
end
if op == "complete" then
  redis.call("HSET", key, "resp", ARGV[3])
  redis.call("HDEL", key, "token")
  redis.call("PEXPIRE", key, ARGV[4])
  return 1
end
redis.call("DEL", key)
return 1
