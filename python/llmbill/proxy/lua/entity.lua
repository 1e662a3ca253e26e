-- ENTITY (redis_limits.py): what ADMIT and RELEASE keep per entity, and the clock. Each of those
-- scripts is this file followed by its own.
--
-- Per entity e (its kind and id, joined by \x1f) under key prefix p, two keys:
--   <p>h:<e> hash, the entity: '$h' nano-units held (by calls in flight and by settled costs), '$n'
--     calls in flight, '$k' members of the index, '$p' no member of the index expires before it
--     ('': none), '$x' when this hash expires (this clock), '$m' '$q' '$t' a UTC minute and its
--     requests and tokens, '$d' '$e' a UTC day and its tokens, <call id> what a call in flight
--     reserved, '$b<second>' what settled calls hold until that second.
--   <p>y:<e> zset, the index: each call in flight by when its reservation expires (its process died),
--     each '$b<second>' bucket by its second.
-- So a call costs each of its entities one HMGET and one HSET plus its index entry, where a key per
-- counter cost over ten commands. Members are purged only once one may have expired ('$p' passed):
-- a bucket a second at most, and a dead call's entry at its expiry; before that nothing can have
-- expired, so a refusal is always decided on what is still held.
-- Numbers are Lua doubles, exact integers to 2^53; integer fields are written with %d, as a Lua
-- number would otherwise be printed in %.14g.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local minute, day = math.floor(now / 60), math.floor(now / 86400)
local SLACK = 60  -- a key lives this much past what it needs, so its expiry is reset once a minute, not per call
local CHUNK = 1000  -- ids per HMGET / HDEL in a purge (unpack spreads a bounded number of values)

local function fmt(v)
  return string.format('%d', v)
end

local function num(v)
  return tonumber(v) or 0  -- HMGET gives false for a field that is not there
end

-- One HMGET: the entity's fields, then `extra` fields' values (returned as they are).
local function load(p, e, extra)
  local s = {h = p .. 'h:' .. e, y = p .. 'y:' .. e, put = {}}
  local v = redis.call('HMGET', s.h, '$h', '$n', '$k', '$p', '$x', '$m', '$q', '$t', '$d', '$e', unpack(extra))
  s.held, s.n, s.k, s.due, s.x = num(v[1]), num(v[2]), num(v[3]), tonumber(v[4]), num(v[5])
  s.q, s.t, s.dt = 0, 0, 0
  if num(v[6]) == minute then s.q, s.t = num(v[7]), num(v[8]) end
  if num(v[9]) == day then s.dt = num(v[10]) end
  return s, v[11], v[12]
end

-- Drops the index members past their expiry: settled costs the database now shows (their bucket),
-- calls whose process died (TTL).
local function purge(s)
  if s.due == nil or now < s.due then
    return
  end
  local gone = redis.call('ZRANGEBYSCORE', s.y, '-inf', now)
  for i = 1, #gone, CHUNK do
    local ids = {unpack(gone, i, math.min(i + CHUNK - 1, #gone))}
    local amounts = redis.call('HMGET', s.h, unpack(ids))
    for j, id in ipairs(ids) do
      if amounts[j] then
        s.held = s.held - tonumber(amounts[j])
        if string.sub(id, 1, 2) ~= '$b' then
          s.n = s.n - 1
        end
      end
    end
    redis.call('HDEL', s.h, unpack(ids))
  end
  redis.call('ZREMRANGEBYSCORE', s.y, '-inf', now)
  s.k = s.k - #gone
  s.due = tonumber(redis.call('ZRANGE', s.y, 0, 0, 'WITHSCORES')[2])
  s.held_dirty = true
end

-- Adds or moves an index member; true when it was not there.
local function index(s, score, member)
  local added = redis.call('ZADD', s.y, score, member) == 1
  if added then
    if s.k == 0 then
      s.new_index = true  -- the zset was gone: it has no expiry yet
    end
    s.k = s.k + 1
  end
  if s.due == nil or score < s.due then
    s.due = score
  end
  s.held_dirty = true
  return added
end

-- One HSET of what changed; the keys' expiry pushed to cover `need` seconds from now.
local function save(s, need)
  local w = s.put
  if s.held_dirty then
    table.insert(w, '$h'); table.insert(w, fmt(s.held))
    table.insert(w, '$n'); table.insert(w, fmt(s.n))
    table.insert(w, '$k'); table.insert(w, fmt(s.k))
    table.insert(w, '$p'); table.insert(w, s.due or '')
  end
  if s.minute_dirty then
    table.insert(w, '$m'); table.insert(w, fmt(minute))
    table.insert(w, '$q'); table.insert(w, fmt(s.q))
    table.insert(w, '$t'); table.insert(w, fmt(s.t))
  end
  if s.day_dirty then
    table.insert(w, '$d'); table.insert(w, fmt(day))
    table.insert(w, '$e'); table.insert(w, fmt(s.dt))
  end
  local secs = nil
  if need > 0 and now + need > s.x then
    secs = math.ceil(need + SLACK)
    s.x = now + secs
    table.insert(w, '$x'); table.insert(w, s.x)
  end
  if #w > 0 then
    redis.call('HSET', s.h, unpack(w))
  end
  if secs then
    redis.call('EXPIRE', s.h, secs)
    redis.call('EXPIRE', s.y, secs + 1)  -- the index outlives the hash that counts it, never the reverse
  elseif s.new_index then
    redis.call('EXPIRE', s.y, math.ceil(s.x - now) + 1)
  end
  s.put, s.held_dirty, s.minute_dirty, s.day_dirty, s.new_index = {}, false, false, false, false
end
