-- ENTITY (redis_limits.py): what ADMIT and RELEASE keep per entity, and the clock. Each of those
-- scripts is this file followed by its own.
--
-- Per entity e (its kind and id, joined by \x1f) under key prefix p, two keys:
--   <p>s:<e> string, the entity's state: struct-packed doubles (read and written whole, one GET and
--     one SET), see FIELDS, then `buckets` pairs (end, nano-units): the costs of settled calls held
--     until that time, oldest first.
--   <p>y:<e> zset, the index of calls in flight: '<call id>:<reserved nano-units>' by when the
--     reservation expires (admission + ttl: its process died), and '' at +inf so that the zset, once
--     made, lives as long as the state rather than being made anew (with an expiry) at every call.
-- So an entity costs a call one GET and one SET, plus adding or removing its index entry. What has
-- expired is dropped only once something may have: a bucket when its end has come (the state says,
-- no command), dead calls once `due` (no entry expires before it) has passed; before that, nothing
-- can have expired, so a refusal is always decided on what is still held.
-- Numbers are doubles: integers are exact to 2^53.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local minute, day = math.floor(now / 60), math.floor(now / 86400)
-- held nano-units, calls in flight, due, when the keys expire (x), whether the index exists, the
-- minute and its requests and tokens, the day and its tokens, how many buckets follow
local FIELDS = 'dddddddddd' .. 'd'
local SLACK = 60  -- keys live this much past what they need, so their expiry moves once a minute, not per call
local CHUNK = 1000  -- index entries per ZRANGEBYSCORE in a purge (unpack spreads a bounded number of values)

local function load(p, e)
  local key = p .. 's:' .. e
  local v = redis.call('GET', key)
  local s = {key = key, y = p .. 'y:' .. e, held = 0, n = 0, due = math.huge, x = 0, indexed = 0, q = 0, t = 0,
             dt = 0, nb = 0, tail = '', dirty = false}
  if v then
    local m, d, pos
    s.held, s.n, s.due, s.x, s.indexed, m, s.q, s.t, d, s.dt, s.nb, pos = struct.unpack(FIELDS, v)
    if m ~= minute then
      s.q, s.t = 0, 0
    end
    if d ~= day then
      s.dt = 0
    end
    s.tail = string.sub(v, pos)
    -- buckets whose end has come: the database shows those costs now
    while s.nb > 0 do
      local ends, amount = struct.unpack('dd', s.tail)
      if ends > now then
        break
      end
      s.held, s.nb, s.tail, s.dirty = s.held - amount, s.nb - 1, string.sub(s.tail, 17), true
    end
  end
  return s
end

-- Drops the index entries past their expiry: calls whose process died.
local function purge(s)
  if now < s.due then
    return
  end
  while true do
    local gone = redis.call('ZRANGEBYSCORE', s.y, '-inf', now, 'LIMIT', 0, CHUNK)
    for _, member in ipairs(gone) do
      s.held, s.n = s.held - tonumber(string.match(member, ':(%d+)$')), s.n - 1
    end
    if #gone > 0 then
      redis.call('ZREMRANGEBYRANK', s.y, 0, #gone - 1)  -- the ones just read: the lowest scores
    end
    if #gone < CHUNK then
      break
    end
  end
  s.due = tonumber(redis.call('ZRANGE', s.y, 0, 0, 'WITHSCORES')[2]) or math.huge
  s.dirty = true
end

-- Enters a call in flight in the index; true when it was not there.
local function enter(s, member, expiry)
  if s.indexed == 0 then  -- made here: anything left of an earlier state's index goes
    redis.call('DEL', s.y)
    redis.call('ZADD', s.y, 'inf', '')
    s.indexed = 1
    s.x = 0  -- so save() sets the index's expiry
  end
  if redis.call('ZADD', s.y, expiry, member) == 0 then
    return false
  end
  s.n, s.due, s.dirty = s.n + 1, math.min(s.due, expiry), true
  return true
end

-- Adds a settled cost to the bucket ending at `ends` (the newest, or a new one after it).
local function hold(s, ends, amount)
  local last = (s.nb - 1) * 16
  if s.nb > 0 and struct.unpack('d', s.tail, last + 1) == ends then
    local _, held = struct.unpack('dd', s.tail, last + 1)
    s.tail = string.sub(s.tail, 1, last) .. struct.pack('dd', ends, held + amount)
  else
    s.tail, s.nb = s.tail .. struct.pack('dd', ends, amount), s.nb + 1
  end
  s.held, s.dirty = s.held + amount, true
end

-- Writes the state back if it changed, its keys' expiry pushed to cover `need` seconds from now.
local function save(s, need)
  if need > 0 and now + need > s.x then
    s.x = now + math.ceil(need + SLACK)
    if s.indexed == 1 then
      redis.call('EXPIRE', s.y, math.ceil(s.x - now) + 1)  -- the index outlives the state, never the reverse
    end
    s.dirty = true
  end
  if s.dirty then
    redis.call('SET', s.key, struct.pack(FIELDS, s.held, s.n, s.due, s.x, s.indexed, minute, s.q, s.t, day, s.dt, s.nb)
      .. s.tail, 'EX', math.max(math.ceil(s.x - now), 1))
    s.dirty = false
  end
end
