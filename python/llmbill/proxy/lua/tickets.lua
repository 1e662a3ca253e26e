-- TICKETS (redis_limits.py): gives back tickets ADMIT handed out and their process did not use (idle,
-- past their minute, or at shutdown): their amount and parallel slot, and their request if their
-- minute is still this one (a request never made must not count against the rpm limit).
-- ARGV: now (0: Redis TIME), key prefix, then 3 per ticket: entity, ticket, counted (1: it took a
-- request of its minute).
local p = ARGV[2]
local given = 0
for b = 3, #ARGV, 3 do
  local s = load(p, ARGV[b])
  local ticket = ARGV[b + 1]
  if redis.call('ZREM', s.y, ticket) == 1 then
    s.held, s.n, s.dirty = s.held - tonumber(string.match(ticket, ':(%d+)$')), s.n - 1, true
    if ARGV[b + 2] == '1' and tonumber(string.match(ticket, '^t:(%d+):')) == minute and s.q > 0 then
      s.q = s.q - 1
    end
    given = given + 1
  end
  save(s, 0)
end
return given
