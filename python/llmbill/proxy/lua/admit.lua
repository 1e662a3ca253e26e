-- ADMIT (redis_limits.py): checks every slot of one call, then takes all of them or none; and hands
-- out tickets (one call admitted ahead, to the calling process) where an entity is far from its limits.
-- ARGV: now (0: Redis TIME), ttl seconds, key prefix, call id, confirm (1: the call was admitted by its
--   process's tickets already, one per slot: nothing is checked or refused), r, then r arguments of
--   releases carried along (release.lua: run first, so what they free counts), then 9 per slot:
--   entity, rpm, tpm, parallel, tpd (-1: none), headroom (-1: no budget), amount (nano-units),
--   the ticket the call used ('' unless confirm), the ticket wanted (its amount; -1: none)
-- Returns {slot index (1-based), limit, reserved nano-units, wait ms} when refused, else
-- {0, ms left in this minute, the minute, the 1-based indexes of the slots given a ticket...}.
-- A slot with a budget or a parallel limit enters the call in its entity's index until released.
--
-- A ticket is an admission taken in advance: it is counted in the minute's requests, entered in the
-- index ('t:<minute>:<call id that got it>:<amount>', so it holds a parallel slot and its amount
-- like a call) and expires SPARE_SECONDS after its minute. Its process may use it for one call
-- within that minute (the call is then confirmed here afterwards) or gives it back (tickets.lua).
-- It is given only where an entity has more than SPARE calls of rpm and parallel room and more than
-- SPARE + 1 times its amount of budget left after it, never in a minute's last SPARE_SECONDS, and
-- never with a tpm or tpd limit (those count tokens only known after a call), so near any limit
-- every call is checked here, one by one, as before.
local ttl, p, call, confirm = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5] == '1'
local PER, SPARE, SPARE_SECONDS = 9, 16, 5
local first = 7 + tonumber(ARGV[6])  -- the first slot's first argument
release_calls(p, 7, first - 1)
local n = (#ARGV - first + 1) / PER
local slots, states, loaded = {}, {}, {}  -- states by entity: a call naming one twice reads and counts it once

-- A refusal keeps what was dropped as expired on the way.
local function refuse(i, limit, held, wait)
  for _, s in ipairs(loaded) do
    save(s, 0)
  end
  return {i, limit, held, wait}
end

for i = 1, n do
  local b = first - 1 + (i - 1) * PER
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
  if not confirm then
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
  end
  slots[i] = {s, rpm, parallel, headroom, holds, ARGV[b + 7], ARGV[b + 8], ARGV[b + 9], tpm < 0 and tpd < 0}
end

local left = (minute + 1) * 60 - now  -- seconds of this minute a ticket given now could be used in
local label = 't:' .. string.format('%d', minute) .. ':' .. call .. ':'  -- a ticket's name, but for its amount
local granted = {0, math.floor(left * 1000), minute}
for i = 1, n do
  local s, rpm, parallel, headroom, holds, amount, ticket, wanted, ticketable = unpack(slots[i])
  local want = tonumber(wanted)
  local need = 0
  local counts = rpm >= 0
  if ticket ~= '' then
    -- The call was admitted by this ticket, and counted in the ticket's minute then: it takes the
    -- ticket's place. A ticket already gone (given back, or expired while this was on its way) still
    -- leaves the call to be entered: it runs.
    if redis.call('ZREM', s.y, ticket) == 1 then
      s.held, s.n, s.dirty = s.held - tonumber(string.match(ticket, ':(%d+)$')), s.n - 1, true
      counts = false
    end
  end
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
  if want >= 0 and ticketable and left > SPARE_SECONDS
      and (rpm < 0 or rpm - s.q > SPARE) and (parallel < 0 or parallel - s.n > SPARE)
      and (headroom < 0 or headroom - s.held > (SPARE + 1) * want) then
    if enter(s, label .. wanted, (minute + 1) * 60 + SPARE_SECONDS) then
      s.held = s.held + want
      if rpm >= 0 then
        s.q = s.q + 1
      end
      granted[#granted + 1] = i
    end
    need = math.max(need, 120)
  end
  save(s, need)
end
return granted
