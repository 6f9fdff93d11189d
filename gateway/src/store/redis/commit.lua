-- One atomic step of the Redis store: checks versions, then writes conversations, their log
-- entries, client ids, indexes and operator records. Nothing is written unless every check
-- passes. Fails with 0 (a conversation's version or client ids moved on) or 2 (an operator's
-- record or load moved on): read again and retry.
--
-- An operator's record carries two versions: `v` (the record) and `l` (their load: it grows
-- whenever a conversation starts or stops being held by them). An offer or a take checks the
-- operator's `l`, so two nodes can never both fill the same free place.
--
-- A conversation that enters the queue (created, or handed back) takes the next number of one
-- counter, `P:arrivals` (INCR), here, in the same step that stores it: queue order is then the
-- order in which arrivals were stored, on every node, and a new arrival's place is always
-- behind everyone already there. The counter starts at the first arrival's queued-at time in
-- ms, so that conversations an older gateway scored by that time stay in front. The number
-- is kept in the conversation's hash as `a` (its JSON is written before the number exists).
--
-- Returns {1, the numbers given, in order of the conversations that took one}, {0} or {2}.
--
-- ARGV: prefix, ttl seconds, conversation count, operator count, then per conversation:
--   id, expected version ('0': must not exist), json, token hash, holder, queue score ('' when
--   not queued; else its place in queue order, see `queue_score` in mod.rs: without the
--   arrival number when the next argument is '1'), '1' to take a new arrival number ('0' not),
--   queued-at ms ('' when not queued), visitor node ('-' keep, '' clear, else set),
--   client id ('' none), client seq, what the holder holds of it (weight if not a call,
--   '1' if a call, '1' if an offer; each '0' when nobody holds it), next deadline in ms for `P:dl` ('' none: out of the
--   index; '-' leave the index alone), entry count, then entry count x (seq, json)
-- and per operator: id, expected version, expected load version ('' not checked), json,
-- console node ('-' keep, '' clear, else set), capacity while on duty and connected ('' when
-- not: out of `P:duty`, the summary `on_duty` reads instead of every record).
local p = ARGV[1]
local ttl = tonumber(ARGV[2])
local nconv = tonumber(ARGV[3])
local nops = tonumber(ARGV[4])

-- First pass: every check, no writes.
local i = 5
local convs = {}
for _ = 1, nconv do
  local c = {
    id = ARGV[i], expect = ARGV[i + 1], json = ARGV[i + 2], token = ARGV[i + 3],
    holder = ARGV[i + 4], queued = ARGV[i + 5], enq = ARGV[i + 6], since = ARGV[i + 7],
    node = ARGV[i + 8], cid = ARGV[i + 9], cseq = ARGV[i + 10], hw = ARGV[i + 11],
    hp = ARGV[i + 12], ho = ARGV[i + 13], dl = ARGV[i + 14],
    n = tonumber(ARGV[i + 15]), at = i + 16,
  }
  i = i + 16 + 2 * c.n
  local key = p .. ':c:' .. c.id
  local v = redis.call('HGET', key, 'v') or '0'
  if v ~= c.expect then return {0} end
  if c.cid ~= '' and redis.call('HEXISTS', p .. ':cid:' .. c.id, c.cid) == 1 then return {0} end
  convs[#convs + 1] = c
end
local ops = {}
for _ = 1, nops do
  local o = { id = ARGV[i], expect = ARGV[i + 1], load = ARGV[i + 2], json = ARGV[i + 3],
    node = ARGV[i + 4], duty = ARGV[i + 5] }
  i = i + 6
  local key = p .. ':o:' .. o.id
  local cur = redis.call('HMGET', key, 'v', 'l')
  if (cur[1] or '0') ~= o.expect then return {2} end
  if o.load ~= '' and (cur[2] or '0') ~= o.load then return {2} end
  ops[#ops + 1] = o
end

-- Second pass: writes.
local written = {1}
for _, c in ipairs(convs) do
  local key = p .. ':c:' .. c.id
  local old = redis.call('HMGET', key, 't', 'h', 'hw', 'hp', 'ho', 'q')
  local old_token, old_holder = old[1] or '', old[2] or ''
  local was_queued = old[6] == '1'
  -- Running sums on the holder's record: `w` weight of what they hold that is not a call,
  -- `p` calls they hold, `o` offers pending; so the dispatcher reads loads from the records.
  -- Only what changed is written (most steps change none of it).
  local ow, op_, oo = tonumber(old[3] or '0'), tonumber(old[4] or '0'), tonumber(old[5] or '0')
  local nw, np, no = tonumber(c.hw), tonumber(c.hp), tonumber(c.ho)
  if old_holder == c.holder then
    if c.holder ~= '' then
      local k = p .. ':o:' .. c.holder
      if nw ~= ow then redis.call('HINCRBY', k, 'w', nw - ow) end
      if np ~= op_ then redis.call('HINCRBY', k, 'p', np - op_) end
      if no ~= oo then redis.call('HINCRBY', k, 'o', no - oo) end
    end
  else
    if old_holder ~= '' then
      local ok = p .. ':o:' .. old_holder
      redis.call('HINCRBY', ok, 'w', 0 - ow)
      redis.call('HINCRBY', ok, 'p', 0 - op_)
      redis.call('HINCRBY', ok, 'o', 0 - oo)
      redis.call('HINCRBY', ok, 'l', 1)
      redis.call('SREM', p .. ':held:' .. old_holder, c.id)
    end
    if c.holder ~= '' then
      local nk = p .. ':o:' .. c.holder
      redis.call('HINCRBY', nk, 'w', nw)
      redis.call('HINCRBY', nk, 'p', np)
      redis.call('HINCRBY', nk, 'o', no)
      redis.call('HINCRBY', nk, 'l', 1)
      redis.call('SADD', p .. ':held:' .. c.holder, c.id)
    end
  end
  if old_token ~= '' and old_token ~= c.token then redis.call('DEL', p .. ':tok:' .. old_token) end
  redis.call('HSET', key, 'v', tostring(tonumber(c.expect) + 1), 'd', c.json, 't', c.token,
    'h', c.holder, 'q', (c.queued ~= '' and '1' or '0'), 'hw', c.hw, 'hp', c.hp, 'ho', c.ho)
  if c.node ~= '-' then redis.call('HSET', key, 'n', c.node) end
  redis.call('EXPIRE', key, ttl)
  if c.expect == '0' then redis.call('SADD', p .. ':convs', c.id) end
  if c.token ~= '' then redis.call('SET', p .. ':tok:' .. c.token, c.id, 'EX', ttl) end
  if c.queued ~= '' then
    local score = c.queued
    if c.enq == '1' then
      local counter = p .. ':arrivals'
      redis.call('SET', counter, c.since, 'NX')
      local a = redis.call('INCR', counter)
      redis.call('HSET', key, 'a', a)
      written[#written + 1] = a
      -- A number, not tostring (%.14g): Redis writes number arguments exactly.
      score = tonumber(c.queued) + a
    end
    redis.call('ZADD', p .. ':qz', score, c.id)
    if not was_queued or c.enq == '1' then
      redis.call('SADD', p .. ':q', c.id)
      redis.call('HSET', p .. ':qt', c.id, c.since)
      redis.call('ZADD', p .. ':qw', tonumber(c.since), c.id)
    end
  elseif old[6] ~= '0' then
    -- Out of the queue: it was queued, or cannot tell (a new hash, or one without `q`).
    redis.call('SREM', p .. ':q', c.id)
    redis.call('ZREM', p .. ':qz', c.id)
    redis.call('HDEL', p .. ':qt', c.id)
    redis.call('ZREM', p .. ':qw', c.id)
  end
  if c.dl == '' then
    redis.call('ZREM', p .. ':dl', c.id)
  elseif c.dl ~= '-' then
    redis.call('ZADD', p .. ':dl', tonumber(c.dl), c.id)
  end
  if c.n > 0 then
    local log = p .. ':log:' .. c.id
    for k = 0, c.n - 1 do
      redis.call('XADD', log, ARGV[c.at + 2 * k] .. '-1', 'e', ARGV[c.at + 2 * k + 1])
    end
    redis.call('EXPIRE', log, ttl)
  end
  if c.cid ~= '' then
    local ck = p .. ':cid:' .. c.id
    redis.call('HSET', ck, c.cid, c.cseq)
    redis.call('EXPIRE', ck, ttl)
  end
end
for _, o in ipairs(ops) do
  local key = p .. ':o:' .. o.id
  redis.call('HSET', key, 'v', tostring(tonumber(o.expect) + 1), 'd', o.json)
  if o.node ~= '-' then redis.call('HSET', key, 'n', o.node) end
  redis.call('SADD', p .. ':ops', o.id)
  if o.duty == '' then
    redis.call('HDEL', p .. ':duty', o.id)
  else
    redis.call('HSET', p .. ':duty', o.id, o.duty)
  end
end
return written
