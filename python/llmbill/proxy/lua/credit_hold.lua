-- CREDIT_HOLD (credits/redis_ledger.py): one payer's prepaid-credit check and hold, over every
-- process's settled usage and open holds; with no hold id it only writes (settles) and reports.
-- Money in integer nano-units.
-- ARGV: now (0: Redis TIME), ttl seconds, key prefix, payer, hold id ('': no hold), amount, balance
--   (the caller's latest Lago read), seed (-1: none), when that seed was read (unix seconds), an id
--   for the tally should this call make it, the caller's origin, the tally its total is counted in
--   ('': none yet), that total, the part of it already confirmed, count of unconfirmed settles, those
--   settles as (unix second, amount) pairs, count of hold ids to drop first, those ids, then per
--   applicable wallet: lago id, consumed.
-- Returns {state, available, unapplied, held, tally, made, since, counted} as strings; state: held |
-- refused | report | unseeded. tally, made, since: the tally's id, when Redis made it, when its seed
-- was read; counted: what the tally now counts of the caller's usage.
--
-- Keys: <p>cl:<payer> hash: 's' = settled usage not yet applied, 'w:<wallet>' = what the wallet had
-- consumed when its consumption was last taken from 's' (set at first sight), 'i', 'n', 't' = the
-- tally's id, made, since, 'o:<origin>' = the usage of that origin counted so far. <p>co:<payer> zset:
-- the origins by their last write, so an origin idle for ttl leaves the hash. <p>cy:<payer> zset and
-- <p>ch:<payer> hash: the open holds by expiry and amount, '=' their sum (as lua/admit.lua keeps
-- reservations).
--
-- Why a total per origin, not an amount to add: a script whose reply was lost (a timeout, Redis
-- stopping) is sent again, and adding again would count it twice; a total counts only what it adds to
-- the last one. Why settle times: a tally made from a seed (Lago's usage, read at 'since') already
-- has the usage settled before then, so a caller's usage counted in a lost tally, or never written,
-- joins a new tally only for what it settled since.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local ttl, p, payer, id = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local amount, balance, seed, seeded_at, fresh = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10]
local origin, mine, total, confirmed = ARGV[11], ARGV[12], tonumber(ARGV[13]), tonumber(ARGV[14])
local nsettled = tonumber(ARGV[15])
local at = 16 + 2 * nsettled
local ndrop = tonumber(ARGV[at])
local l, y, h, o = p .. 'cl:' .. payer, p .. 'cy:' .. payer, p .. 'ch:' .. payer, p .. 'co:' .. payer

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

for i = 1, ndrop do drop(ARGV[at + i]) end
-- Holds past their expiry: calls whose process died.
for _, hold in ipairs(redis.call('ZRANGEBYSCORE', y, '-inf', now)) do drop(hold) end

if not redis.call('HGET', l, 's') then
  if seed == '-1' then return {'unseeded', '0', '0', '0', '', '0', '0', '0'} end
  redis.call('HSET', l, 's', seed, 'i', fresh, 'n', string.format('%.6f', now), 't', seeded_at)
end
if not redis.call('HGET', l, 'i') then  -- a tally older than tally ids: all the caller has unconfirmed is new
  redis.call('HSET', l, 'i', fresh, 'n', string.format('%.6f', now), 't', '0')
end
local tally, made, since = unpack(redis.call('HMGET', l, 'i', 'n', 't'))

-- The caller's usage. In the tally it counts in: its total, less what the tally has of it (or, when
-- the field left for idleness, what the caller knows was confirmed). In another tally (this one was
-- made since, from a seed): what it settled at or after the seed's read.
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', o, '-inf', now - ttl)) do
  redis.call('HDEL', l, 'o:' .. gone)
  redis.call('ZREM', o, gone)
end
local field = 'o:' .. origin
local had = redis.call('HGET', l, field)
local counted, before = 0, 0
if mine == tally then
  counted, before = total, tonumber(had or confirmed)
else
  for i = 16, at - 1, 2 do
    if tonumber(ARGV[i]) >= tonumber(since) then counted = counted + tonumber(ARGV[i + 1]) end
  end
  before = tonumber(had or '0')
end
if counted > before then
  redis.call('HINCRBY', l, 's', fmt(counted - before))
  redis.call('HSET', l, field, fmt(counted))
  had = counted
end
if had then redis.call('ZADD', o, now, origin) end
local mine_now = fmt(math.max(counted, before))
local s = tonumber(redis.call('HGET', l, 's'))

-- What the wallets consumed since their baseline was invoices applying usage: it leaves 's' (never
-- below 0: what they applied beyond our usage, fees or taxes, is not ours). A caller whose read is
-- older than the baseline sees a negative difference: it counts as more usage (its balance is older
-- by the same amount), so a stale read never makes more available than a fresh one.
local applied, behind = 0, 0
for i = at + ndrop + 1, #ARGV, 2 do
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
local function reply(state)
  return {state, fmt(available), fmt(unapplied), fmt(held), tally, made, since, mine_now}
end
if id == '' then return reply('report') end
if available < amount then return reply('refused') end
redis.call('ZADD', y, now + ttl, id)
redis.call('HSET', h, id, ARGV[6])
redis.call('HINCRBY', h, '=', ARGV[6])
redis.call('EXPIRE', y, ttl)
redis.call('EXPIRE', h, ttl)
return reply('held')
