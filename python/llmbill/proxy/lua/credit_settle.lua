-- CREDIT_SETTLE (credits/redis_ledger.py): ends holds and counts settled usage, for one payer.
-- ARGV: key prefix, payer, settled to add (nano-units), then the hold ids to drop.
-- Returns 1, or 0 when the payer has no tally (Redis lost it): nothing is added then, and the caller
-- keeps the amount for after the re-seed. Keys as in credit_hold.lua.
local p, payer, add = ARGV[1], ARGV[2], ARGV[3]
local l, y, h = p .. 'cl:' .. payer, p .. 'cy:' .. payer, p .. 'ch:' .. payer
for i = 4, #ARGV do
  local a = redis.call('HGET', h, ARGV[i])
  if a then
    redis.call('HINCRBY', h, '=', '-' .. a)
    redis.call('HDEL', h, ARGV[i])
  end
  redis.call('ZREM', y, ARGV[i])
end
if add == '0' then return 1 end
if not redis.call('HGET', l, 's') then return 0 end
redis.call('HINCRBY', l, 's', add)
return 1
