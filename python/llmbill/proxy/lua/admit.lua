-- ADMIT (redis_limits.py): checks every slot of one call, then takes all of them or none.
-- ARGV: now (0: Redis TIME), ttl seconds, call id, key prefix, then 7 per slot:
--   entity, rpm, tpm, parallel, tpd (-1: none), headroom (-1: no budget), amount (nano-units)
-- Returns {} when admitted, else {slot index (1-based), limit, reserved nano-units, wait ms}.
-- A slot with a budget or a parallel limit enters the call in its entity's index until released.
local ttl, call, p = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local n = (#ARGV - 4) / 7
local slots, states = {}, {}  -- states by entity: a call naming one twice reads and counts it once

for i = 1, n do
  local b = 4 + (i - 1) * 7
  local e = ARGV[b + 1]
  local rpm, tpm, parallel, tpd = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local headroom = tonumber(ARGV[b + 6])
  local s = states[e]
  if s == nil then
    s = load(p, e)
    states[e] = s
  end
  local held, holds = 0, headroom >= 0 or parallel >= 0
  if holds then
    purge(s)
    held = s.held
  end
  if headroom >= 0 and held >= headroom then
    return {i, 'budget', held, 0}
  end
  if rpm >= 0 and s.q >= rpm then return {i, 'rpm', held, math.ceil((60 - now % 60) * 1000)} end
  if tpm >= 0 and s.t >= tpm then return {i, 'tpm', held, math.ceil((60 - now % 60) * 1000)} end
  if parallel >= 0 and s.n >= parallel then
    return {i, 'parallel', held, 1000}
  end
  if tpd >= 0 and s.dt >= tpd then
    return {i, 'tpd', held, math.ceil((86400 - now % 86400) * 1000)}
  end
  slots[i] = {s, rpm >= 0, holds, ARGV[b + 7]}
end

for i = 1, n do
  local s, counts, holds, amount = unpack(slots[i])
  local need, put = 0, nil
  if counts then
    s.q = s.q + 1
    s.counted = true
    need = 120
  end
  if holds then
    if index(s, now + ttl, call) then
      s.held = s.held + tonumber(amount)
      s.n = s.n + 1
      put = {call, amount}
    end
    need = ttl
  end
  save(s, need, put)
end
return {}
