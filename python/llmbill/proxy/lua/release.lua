-- RELEASE (redis_limits.py): gives back what ADMIT took for calls that ended and counts their tokens.
-- A function, run by the RELEASE script on its ARGV and by ADMIT on the releases it carries (a
-- process sends its releases with its next admission when one comes soon enough: one round trip).
-- Records from ARGV[from] to ARGV[to], each: call id, tokens, cost (nano-units), hold seconds, the
-- number of slots, then 4 per slot: entity, has tpm, has tpd, what ADMIT reserved (its amount; -1:
-- it entered no index).
-- A settled call's reservation becomes its cost, held `hold` seconds: until every process's spend
-- (from the database, refreshed every cache_refresh_interval after a flush) shows it. Costs whose
-- hold ends in the same sixteenth of the hold share a bucket that ends with it: a state holds at most
-- 17 buckets, and a cost is held at most a sixteenth of the hold longer.
local function release_calls(p, from, to)
  local r = from
  while r <= to do
    local call, tokens, cost, hold_for = ARGV[r], tonumber(ARGV[r + 1]), tonumber(ARGV[r + 2]), tonumber(ARGV[r + 3])
    local last = r + 4 + 4 * tonumber(ARGV[r + 4])
    local step = hold_for / 16
    local ends = math.ceil((now + hold_for) / step) * step
    for b = r + 5, last, 4 do
      local s = load(p, ARGV[b])
      local need = 0
      local reserved = ARGV[b + 3]
      -- still in flight: neither released nor expired
      if reserved ~= '-1' and redis.call('ZREM', s.y, call .. ':' .. reserved) == 1 then
        reserved = tonumber(reserved)
        s.held, s.n, s.dirty = s.held - reserved, s.n - 1, true
        -- never more than was reserved (the cost is bounded by it unless the upstream overbilled)
        local keep = math.min(cost, reserved)
        if keep > 0 then
          hold(s, ends, keep)
          need = hold_for
        end
      end
      if tokens > 0 and ARGV[b + 1] == '1' then
        s.t, s.dirty = s.t + tokens, true
        need = math.max(need, 120)
      end
      if tokens > 0 and ARGV[b + 2] == '1' then
        s.dt, s.dirty = s.dt + tokens, true
        need = 172800
      end
      save(s, need)
    end
    r = last + 1
  end
end
