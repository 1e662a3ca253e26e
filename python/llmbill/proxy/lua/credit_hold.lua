-- CREDIT_HOLD (credits/redis_ledger.py): one payer's prepaid-credit check and hold, over every
-- process's settled usage and open holds. Money in integer nano-units.
-- ARGV: now (0: Redis TIME), ttl seconds, key prefix, payer, hold id ('': only report the figures),
--   amount, balance (the caller's latest Lago read), seed (-1: none), settled to add first,
--   count of hold ids to drop first, those ids, then per applicable wallet: lago id, consumed.
-- Returns {state, available, unapplied, held} as strings; state: held | refused | report | unseeded.
--
-- Keys: <p>cl:<payer> hash: 's' = settled usage not yet applied, 'w:<wallet>' = what the wallet had
-- consumed when its consumption was last taken from 's' (set at first sight). <p>cy:<payer> zset and
-- <p>ch:<payer> hash: the open holds by expiry and amount, '=' their sum (as lua/admit.lua keeps
-- reservations).
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local ttl, p, payer, id = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local amount, balance, seed, add = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9]
local ndrop = tonumber(ARGV[10])
local l, y, h = p .. 'cl:' .. payer, p .. 'cy:' .. payer, p .. 'ch:' .. payer

local function drop(hold)
  local a = redis.call('HGET', h, hold)
  if a then
    redis.call('HINCRBY', h, '=', '-' .. a)
    redis.call('HDEL', h, hold)
  end
  redis.call('ZREM', y, hold)
end

local function fmt(x)
  return string.format('%.0f', x)
end

for i = 1, ndrop do drop(ARGV[10 + i]) end
-- Holds past their expiry: calls whose process died.
for _, hold in ipairs(redis.call('ZRANGEBYSCORE', y, '-inf', now)) do drop(hold) end

if not redis.call('HGET', l, 's') then
  if seed == '-1' then return {'unseeded', '0', '0', '0'} end
  redis.call('HSET', l, 's', seed)
end
if add ~= '0' then redis.call('HINCRBY', l, 's', add) end
local s = tonumber(redis.call('HGET', l, 's'))

-- What the wallets consumed since their baseline was invoices applying usage: it leaves 's' (never
-- below 0: what they applied beyond our usage, fees or taxes, is not ours). A caller whose read is
-- older than the baseline sees a negative difference: it counts as more usage (its balance is older
-- by the same amount), so a stale read never makes more available than a fresh one.
local applied, behind = 0, 0
for i = 11 + ndrop, #ARGV, 2 do
  local f, c = 'w:' .. ARGV[i], ARGV[i + 1]
  local b = redis.call('HGET', l, f)
  if not b then
    redis.call('HSET', l, f, c)
  else
    local d = tonumber(c) - tonumber(b)
    if d > 0 then
      applied = applied + d
      redis.call('HSET', l, f, c)
    elseif d < 0 then
      behind = behind - d
    end
  end
end
if applied > 0 then
  s = math.max(0, s - applied)
  redis.call('HSET', l, 's', fmt(s))
end

local unapplied = s + behind
local held = tonumber(redis.call('HGET', h, '=') or '0')
local available = balance - unapplied - held
local figures = {fmt(available), fmt(unapplied), fmt(held)}
if id == '' then return {'report', figures[1], figures[2], figures[3]} end
if available < amount then return {'refused', figures[1], figures[2], figures[3]} end
redis.call('ZADD', y, now + ttl, id)
redis.call('HSET', h, id, ARGV[6])
redis.call('HINCRBY', h, '=', ARGV[6])
redis.call('EXPIRE', y, ttl)
redis.call('EXPIRE', h, ttl)
return {'held', figures[1], figures[2], figures[3]}
