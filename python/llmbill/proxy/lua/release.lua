-- RELEASE (redis_limits.py): gives back what ADMIT took for one call and counts its tokens.
-- ARGV: now (0: Redis TIME), call id, key prefix, tokens, then 3 per slot: entity, has tpm, has tpd.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local call, p, tokens = ARGV[2], ARGV[3], tonumber(ARGV[4])
local minute, day = math.floor(now / 60), math.floor(now / 86400)
for b = 5, #ARGV, 3 do
  local e = ARGV[b]
  local z, h = p .. 'z:' .. e, p .. 'h:' .. e
  if redis.call('ZREM', z, call) == 1 then
    local a = redis.call('HGET', h, call)
    if a then
      redis.call('HINCRBY', h, '=', '-' .. a)
      redis.call('HDEL', h, call)
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
