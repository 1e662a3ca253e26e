-- ADMIT (redis_limits.py): checks every slot of one call, then takes all of them or none.
-- ARGV: now (0: Redis TIME), ttl seconds, call id, key prefix, then 7 per slot:
--   entity, rpm, tpm, parallel, tpd (-1: none), headroom (-1: no budget), amount (nano-units)
-- Returns {} when admitted, else {slot index (1-based), limit, reserved nano-units, wait ms}.
-- A slot with a budget or a parallel limit enters the call in its entity's index until released.
local ttl, call, p = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local n = (#ARGV - 4) / 7
local minute_wait = math.ceil((60 - now % 60) * 1000)
local states = {}  -- by entity: a call naming one twice reads and counts it once

for i = 1, n do
  local b = 4 + (i - 1) * 7
  local e = ARGV[b + 1]
  local rpm, tpm, parallel, tpd = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local headroom = tonumber(ARGV[b + 6])
  local s = states[e]
  if s == nil then
    s = load(p, e, {})
    states[e] = s
  end
  local held = '0'
  if headroom >= 0 or parallel >= 0 then
    purge(s)
    held = fmt(s.held)
  end
  if headroom >= 0 and s.held >= headroom then
    return {i, 'budget', held, 0}
  end
  if rpm >= 0 and s.q >= rpm then return {i, 'rpm', held, minute_wait} end
  if tpm >= 0 and s.t >= tpm then return {i, 'tpm', held, minute_wait} end
  if parallel >= 0 and s.n >= parallel then
    return {i, 'parallel', held, 1000}
  end
  if tpd >= 0 and s.dt >= tpd then
    return {i, 'tpd', held, math.ceil((86400 - now % 86400) * 1000)}
  end
end

for i = 1, n do
  local b = 4 + (i - 1) * 7
  local s = states[ARGV[b + 1]]
  local need = 0
  if tonumber(ARGV[b + 2]) >= 0 then
    s.q = s.q + 1
    s.minute_dirty = true
    need = 120
  end
  if tonumber(ARGV[b + 6]) >= 0 or tonumber(ARGV[b + 4]) >= 0 then
    if index(s, now + ttl, call) then
      local amount = ARGV[b + 7]
      s.held = s.held + tonumber(amount)
      s.n = s.n + 1
      table.insert(s.put, call); table.insert(s.put, amount)
    end
    need = ttl
  end
  save(s, need)
end
return {}
