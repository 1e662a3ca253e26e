-- RELEASE (redis_limits.py): gives back what ADMIT took for one call and counts its tokens.
-- ARGV: now (0: Redis TIME), call id, key prefix, tokens, cost (nano-units), hold seconds, then 3 per
-- slot: entity, has tpm, has tpd.
-- A settled call's reservation becomes its cost, held `hold` seconds: until every process's spend
-- (from the database, refreshed every cache_refresh_interval after a flush) shows it. Costs settled
-- in one second share a bucket that expires at the whole second after now + hold (held < 1 s longer).
local call, p, tokens, cost, hold = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local second = math.ceil(now + hold)
local bucket = '$b' .. second
for b = 7, #ARGV, 3 do
  local s, reserved, bucket_held = load(p, ARGV[b], call, bucket)
  local need, put = 0, nil
  if reserved then  -- in flight: neither released nor expired
    reserved = tonumber(reserved)
    s.held = s.held - reserved
    s.n = s.n - 1
    s.holds = true
    redis.call('HDEL', s.h, call)
    s.k = s.k - redis.call('ZREM', s.y, call)
    -- never more than was reserved (the cost is bounded by it unless the upstream overbilled)
    local keep = math.min(cost, reserved)
    if keep > 0 then
      s.held = s.held + keep
      put = {bucket, (tonumber(bucket_held) or 0) + keep}
      if not bucket_held then
        index(s, second, bucket)
      end
      need = hold
    end
  end
  if tokens > 0 and ARGV[b + 1] == '1' then
    s.t = s.t + tokens
    s.tokens = true
    need = math.max(need, 120)
  end
  if tokens > 0 and ARGV[b + 2] == '1' then
    s.dt = s.dt + tokens
    s.day_tokens = true
    need = 172800
  end
  save(s, need, put)
end
return 1
