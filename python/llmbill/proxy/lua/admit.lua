-- ADMIT (redis_limits.py): checks every slot of one call, then takes all of them or none.
-- ARGV: now (0: Redis TIME), ttl seconds, call id, key prefix, then 7 per slot:
--   entity, headroom (-1: no budget), rpm, tpm, parallel, tpd (-1: none), amount (nano-units)
-- Returns {} when admitted, else {slot index (1-based), limit, reserved nano-units, wait ms}.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local ttl, call, p = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local minute, day = math.floor(now / 60), math.floor(now / 86400)
local minute_wait = math.ceil((60 - now % 60) * 1000)
local n = (#ARGV - 4) / 7

-- Drops the holds past their expiry: calls whose process died (TTL), settled costs the database now
-- shows (hold), in-flight slots of dead processes.
local function purge(y, h, z)
  local gone = redis.call('ZRANGEBYSCORE', y, '-inf', now)
  for _, id in ipairs(gone) do
    local a = redis.call('HGET', h, id)
    if a then
      redis.call('HINCRBY', h, '=', '-' .. a)
      redis.call('HDEL', h, id)
    end
    redis.call('ZREM', y, id)
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
end

for i = 1, n do
  local b = 4 + (i - 1) * 7
  local e = ARGV[b + 1]
  local headroom, rpm, tpm = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local parallel, tpd = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])
  local y, h, z = p .. 'y:' .. e, p .. 'h:' .. e, p .. 'z:' .. e
  local held = '0'  -- returned as Redis stores it: a Lua number would print in %.14g
  if headroom >= 0 or parallel >= 0 then
    purge(y, h, z)
    held = redis.call('HGET', h, '=') or '0'
  end
  local reserved = tonumber(held)
  if headroom >= 0 and reserved >= headroom then
    return {i, 'budget', held, 0}
  end
  if rpm >= 0 or tpm >= 0 then
    local m = redis.call('HMGET', p .. 'm:' .. minute .. ':' .. e, 'q', 't')
    if rpm >= 0 and tonumber(m[1] or '0') >= rpm then return {i, 'rpm', held, minute_wait} end
    if tpm >= 0 and tonumber(m[2] or '0') >= tpm then return {i, 'tpm', held, minute_wait} end
  end
  if parallel >= 0 and redis.call('ZCARD', z) >= parallel then
    return {i, 'parallel', held, 1000}
  end
  if tpd >= 0 and tonumber(redis.call('GET', p .. 'd:' .. day .. ':' .. e) or '0') >= tpd then
    return {i, 'tpd', held, math.ceil((86400 - now % 86400) * 1000)}
  end
end

for i = 1, n do
  local b = 4 + (i - 1) * 7
  local e = ARGV[b + 1]
  local headroom, rpm, parallel = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 5])
  local amount = ARGV[b + 7]
  if rpm >= 0 then
    local m = p .. 'm:' .. minute .. ':' .. e
    redis.call('HINCRBY', m, 'q', 1)
    redis.call('EXPIRE', m, 120)
  end
  if parallel >= 0 then
    local z = p .. 'z:' .. e
    redis.call('ZADD', z, now + ttl, call)
    redis.call('EXPIRE', z, ttl)
  end
  if headroom >= 0 and amount ~= '0' then
    local y, h = p .. 'y:' .. e, p .. 'h:' .. e
    redis.call('ZADD', y, now + ttl, call)
    redis.call('HSET', h, call, amount)
    redis.call('HINCRBY', h, '=', amount)
    redis.call('EXPIRE', y, ttl)
    redis.call('EXPIRE', h, ttl)
  end
end
return {}
