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
-- Numbers are Lua doubles, exact integers to 2^53.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local minute, day = math.floor(now / 60), math.floor(now / 86400)
local SLACK = 60  -- a key lives this much past what it needs, so its expiry is reset once a minute, not per call
local CHUNK = 1000  -- ids per HMGET / HDEL in a purge (unpack spreads a bounded number of values)

-- One HMGET: the entity's fields, then the values of fields a and b (when given), as they are.
local function load(p, e, a, b)
  local h = p .. 'h:' .. e
  local v
  if a then
    v = redis.call('HMGET', h, '$h', '$n', '$k', '$p', '$x', '$m', '$q', '$t', '$d', '$e', a, b)
  else
    v = redis.call('HMGET', h, '$h', '$n', '$k', '$p', '$x', '$m', '$q', '$t', '$d', '$e')
  end
  -- HMGET gives false for a field that is not there: tonumber(false) is nil. Every key is set here,
  -- so the table is made at its size once. Flags: what save() writes.
  local due = tonumber(v[4])
  local s = {h = h, y = p .. 'y:' .. e, held = tonumber(v[1]) or 0, n = tonumber(v[2]) or 0,
             k = tonumber(v[3]) or 0, due = due, due0 = due, x = tonumber(v[5]) or 0, q = 0, t = 0, dt = 0,
             new_minute = tonumber(v[6]) ~= minute, new_day = tonumber(v[9]) ~= day,
             holds = false, counted = false, tokens = false, day_tokens = false, new_index = false}
  if not s.new_minute then
    s.q, s.t = tonumber(v[7]) or 0, tonumber(v[8]) or 0
  end
  if not s.new_day then
    s.dt = tonumber(v[10]) or 0
  end
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
  s.holds = true
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
  s.holds = true
  return added
end

-- One HSET of what changed (`put`: one more field and its value, or nil); the keys' expiry pushed
-- to cover `need` seconds from now. Integral numbers go as they are: Redis writes them as integers.
local function save(s, need, put)
  local w, c = put or {}, put and 2 or 0
  if s.holds then
    w[c + 1], w[c + 2], w[c + 3], w[c + 4], w[c + 5], w[c + 6] = '$h', s.held, '$n', s.n, '$k', s.k
    c = c + 6
    if s.due ~= s.due0 then
      w[c + 1], w[c + 2] = '$p', s.due or ''
      c = c + 2
      s.due0 = s.due
    end
  end
  if s.new_minute and (s.counted or s.tokens) then  -- what is stored is an earlier minute's
    w[c + 1], w[c + 2], w[c + 3], w[c + 4], w[c + 5], w[c + 6] = '$m', minute, '$q', s.q, '$t', s.t
    c = c + 6
    s.new_minute = false
  else
    if s.counted then
      w[c + 1], w[c + 2] = '$q', s.q
      c = c + 2
    end
    if s.tokens then
      w[c + 1], w[c + 2] = '$t', s.t
      c = c + 2
    end
  end
  if s.day_tokens then
    w[c + 1], w[c + 2], w[c + 3], w[c + 4] = '$d', day, '$e', s.dt
    c = c + 4
    s.new_day = false
  end
  local secs = nil
  if need > 0 and now + need > s.x then
    secs = math.ceil(need + SLACK)
    s.x = now + secs
    w[c + 1], w[c + 2] = '$x', s.x
    c = c + 2
  end
  if c > 0 then
    redis.call('HSET', s.h, unpack(w))
  end
  if secs then
    redis.call('EXPIRE', s.h, secs)
    redis.call('EXPIRE', s.y, secs + 1)  -- the index outlives the hash that counts it, never the reverse
  elseif s.new_index then
    redis.call('EXPIRE', s.y, math.ceil(s.x - now) + 1)
  end
  s.holds, s.counted, s.tokens, s.day_tokens, s.new_index = false, false, false, false, false
end
