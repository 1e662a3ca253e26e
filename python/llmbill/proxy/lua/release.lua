-- RELEASE (redis_limits.py): gives back what ADMIT took for one call and counts its tokens.
-- ARGV: now (0: Redis TIME), call id, key prefix, tokens, cost (nano-units), hold seconds, then 3 per
-- slot: entity, has tpm, has tpd.
-- A settled call's reservation becomes its cost, held `hold` seconds: until every process's spend
-- (from the database, refreshed every cache_refresh_interval after a flush) shows it.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local call, p, tokens, cost, hold = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local minute, day = math.floor(now / 60), math.floor(now / 86400)
for b = 7, #ARGV, 3 do
  local e = ARGV[b]
  local y, h = p .. 'y:' .. e, p .. 'h:' .. e
  redis.call('ZREM', p .. 'z:' .. e, call)
  local a = redis.call('HGET', h, call)
  if a then
    if cost ~= '0' and redis.call('ZSCORE', y, call) then
      -- never more than was reserved (the cost is bounded by it unless the upstream overbilled)
      local keep = a
      if tonumber(cost) < tonumber(a) then keep = cost end
      redis.call('HSET', h, call, keep)
      redis.call('HINCRBY', h, '=', '-' .. a)
      redis.call('HINCRBY', h, '=', keep)
      redis.call('ZADD', y, now + hold, call)
    else
      redis.call('HINCRBY', h, '=', '-' .. a)
      redis.call('HDEL', h, call)
      redis.call('ZREM', y, call)
    end
  end
  if tokens > 0 and ARGV[b + 1] == '1' then
    local m = p .. 'm:' .. minute .. ':' .. e
    redis.call('HINCRBY', m, 't', tokens)
    redis.call('EXPIRE', m, 120)
  end
  if tokens > 0 and ARGV[b + 2] == '1' then
    local d = p .. 'd:' .. day .. ':' .. e
    redis.call('INCRBY', d, tokens)
    redis.call('EXPIRE', d, 172800)
  end
end
return 1
