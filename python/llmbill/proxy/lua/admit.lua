-- ADMIT (redis_limits.py): checks every slot of one call, then takes all of them or none.
-- ARGV: now (0: Redis TIME), ttl seconds, key prefix, call id, then 7 per slot:
--   entity, rpm, tpm, parallel, tpd (-1: none), headroom (-1: no budget), amount (nano-units)
-- Returns {} when admitted, else {slot index (1-based), limit, reserved nano-units, wait ms}.
-- A slot with a budget or a parallel limit enters the call in its entity's index until released.
local ttl, p, call = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local n = (#ARGV - 4) / 7
local slots, states, loaded = {}, {}, {}  -- states by entity: a call naming one twice reads and counts it once

-- A refusal keeps what was dropped as expired on the way.
local function refuse(i, limit, held, wait)
  for _, s in ipairs(loaded) do
    save(s, 0)
  end
  return {i, limit, held, wait}
end

for i = 1, n do
  local b = 4 + (i - 1) * 7
  local e = ARGV[b + 1]
  local rpm, tpm = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local parallel, tpd = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local headroom = tonumber(ARGV[b + 6])
  local s = states[e]
  if s == nil then
    s = load(p, e)
    states[e] = s
    loaded[#loaded + 1] = s
  end
  local held, holds = 0, headroom >= 0 or parallel >= 0
  if holds then
    purge(s)
    held = s.held
  end
  if headroom >= 0 and held >= headroom then
    return refuse(i, 'budget', held, 0)
  end
  if rpm >= 0 and s.q >= rpm then return refuse(i, 'rpm', held, math.ceil((60 - now % 60) * 1000)) end
  if tpm >= 0 and s.t >= tpm then return refuse(i, 'tpm', held, math.ceil((60 - now % 60) * 1000)) end
  if parallel >= 0 and s.n >= parallel then
    return refuse(i, 'parallel', held, 1000)
  end
  if tpd >= 0 and s.dt >= tpd then
    return refuse(i, 'tpd', held, math.ceil((86400 - now % 86400) * 1000))
  end
  slots[i] = {s, rpm >= 0, holds, ARGV[b + 7]}
end

for i = 1, n do
  local s, counts, holds, amount = unpack(slots[i])
  local need = 0
  if counts then
    s.q, s.dirty = s.q + 1, true
    need = 120
  end
  if holds then
    if enter(s, call .. ':' .. amount, now + ttl) then
      s.held = s.held + tonumber(amount)
    end
    need = ttl
  end
  save(s, need)
end
return {}
