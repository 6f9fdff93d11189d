-- One atomic step of the Redis store: checks versions, then writes conversations, their log
-- entries, client ids, indexes and operator records. Nothing is written unless every check
-- passes. Returns 1 (written) or 0 (a version, the routing version or the client ids moved on:
-- read again and retry).
--
-- ARGV: prefix, ttl seconds, expected routing version ('' to skip), conversation count,
-- operator count, then per conversation:
--   id, expected version ('0': must not exist), json, token hash, holder, queued ('1'/'0'),
--   visitor node ('-' keep, '' clear, else set), client id ('' none), client seq,
--   bump routing version ('1'/'0'), entry count, then entry count x (seq, json)
-- and per operator: id, expected version, json, node ('-' keep, '' clear, else set), bump.
local p = ARGV[1]
local ttl = tonumber(ARGV[2])
local rv_key = p .. ':rv'
if ARGV[3] ~= '' then
  local rv = redis.call('GET', rv_key) or '0'
  if rv ~= ARGV[3] then return 0 end
end
local nconv = tonumber(ARGV[4])
local nops = tonumber(ARGV[5])

-- First pass: every check, no writes.
local i = 6
local convs = {}
for _ = 1, nconv do
  local c = {
    id = ARGV[i], expect = ARGV[i + 1], json = ARGV[i + 2], token = ARGV[i + 3],
    holder = ARGV[i + 4], queued = ARGV[i + 5], node = ARGV[i + 6],
    cid = ARGV[i + 7], cseq = ARGV[i + 8], bump = ARGV[i + 9],
    n = tonumber(ARGV[i + 10]), at = i + 11,
  }
  i = i + 11 + 2 * c.n
  local key = p .. ':c:' .. c.id
  local v = redis.call('HGET', key, 'v') or '0'
  if v ~= c.expect then return 0 end
  if c.cid ~= '' and redis.call('HEXISTS', p .. ':cid:' .. c.id, c.cid) == 1 then return 0 end
  convs[#convs + 1] = c
end
local ops = {}
for _ = 1, nops do
  local o = { id = ARGV[i], expect = ARGV[i + 1], json = ARGV[i + 2], node = ARGV[i + 3],
    bump = ARGV[i + 4] }
  i = i + 5
  local v = redis.call('HGET', p .. ':o:' .. o.id, 'v') or '0'
  if v ~= o.expect then return 0 end
  ops[#ops + 1] = o
end

-- Second pass: writes.
local bump = false
for _, c in ipairs(convs) do
  local key = p .. ':c:' .. c.id
  local old = redis.call('HMGET', key, 't', 'h', 'q')
  local old_token, old_holder = old[1] or '', old[2] or ''
  if old_token ~= '' and old_token ~= c.token then redis.call('DEL', p .. ':tok:' .. old_token) end
  if old_holder ~= '' and old_holder ~= c.holder then redis.call('SREM', p .. ':held:' .. old_holder, c.id) end
  redis.call('HSET', key, 'v', tostring(tonumber(c.expect) + 1), 'd', c.json, 't', c.token,
    'h', c.holder, 'q', c.queued)
  if c.node ~= '-' then redis.call('HSET', key, 'n', c.node) end
  redis.call('EXPIRE', key, ttl)
  redis.call('SADD', p .. ':convs', c.id)
  if c.token ~= '' then redis.call('SET', p .. ':tok:' .. c.token, c.id, 'EX', ttl) end
  if c.holder ~= '' then redis.call('SADD', p .. ':held:' .. c.holder, c.id) end
  if c.queued == '1' then redis.call('SADD', p .. ':q', c.id) else redis.call('SREM', p .. ':q', c.id) end
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
  if c.bump == '1' then bump = true end
end
for _, o in ipairs(ops) do
  local key = p .. ':o:' .. o.id
  redis.call('HSET', key, 'v', tostring(tonumber(o.expect) + 1), 'd', o.json)
  if o.node ~= '-' then redis.call('HSET', key, 'n', o.node) end
  redis.call('SADD', p .. ':ops', o.id)
  if o.bump == '1' then bump = true end
end
if bump then redis.call('INCR', rv_key) end
return 1
