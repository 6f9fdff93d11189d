-- Deletes a conversation and every key of it (record, log, client ids, token), and takes it
-- out of every index. ARGV: prefix, conversation id. Returns 1 if it existed.
local p, id = ARGV[1], ARGV[2]
local key = p .. ':c:' .. id
local old = redis.call('HMGET', key, 't', 'h', 'hw', 'hp', 'ho')
if old[1] and old[1] ~= '' then redis.call('DEL', p .. ':tok:' .. old[1]) end
if old[2] and old[2] ~= '' then
  redis.call('SREM', p .. ':held:' .. old[2], id)
  local ok = p .. ':o:' .. old[2]
  redis.call('HINCRBY', ok, 'l', 1)
  redis.call('HINCRBY', ok, 'w', 0 - tonumber(old[3] or '0'))
  redis.call('HINCRBY', ok, 'p', 0 - tonumber(old[4] or '0'))
  redis.call('HINCRBY', ok, 'o', 0 - tonumber(old[5] or '0'))
end
redis.call('SREM', p .. ':convs', id)
redis.call('SREM', p .. ':q', id)
redis.call('ZREM', p .. ':qz', id)
redis.call('HDEL', p .. ':qt', id)
redis.call('ZREM', p .. ':dl', id)
redis.call('ZREM', p .. ':qw', id)
local existed = redis.call('DEL', key, p .. ':log:' .. id, p .. ':cid:' .. id)
if existed > 0 then return 1 end
return 0
