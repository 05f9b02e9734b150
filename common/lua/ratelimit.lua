-- Fixed-window rate limit counter (SPEC §3.7). One round trip; Redis runs a script
-- atomically, so concurrent requests of one client cannot interleave between the steps.
--
-- KEYS[1]  the client's counter key (lab:rl:<client>)
-- ARGV[1]  the limit (the decision is made by the caller from the count; passed so the
--          call carries the whole policy)
-- ARGV[2]  the window in milliseconds
--
-- The window starts at the client's first request: the key gets its TTL when INCR
-- creates it. A key that somehow has no TTL (-1, e.g. restored without one) would count
-- forever, so it is given a fresh window instead.
--
-- Returns {count, ttl_ms}.

local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
