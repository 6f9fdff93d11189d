// Peer for several nodes: the least a team would build to run the Socket.IO peer
// (socketio-server.js) as N Node.js processes behind one Redis. Same protocol and frames
// (hub.js's `wire`), same namespaces; what one process kept in memory is in Redis:
//
// - Fan-out: @socket.io/redis-adapter. A conversation is a room (its id) in both namespaces;
//   the person's socket joins it at hello, the operator's at accept. Every event is emitted to
//   the room in both namespaces; the adapter publishes it (PUBLISH) and every node delivers it
//   to its own sockets in the room. Offers go to the operator's socket id (a room of its own).
// - The queue: a sorted set, p:queue, conversation id scored by its queued time (ms): ZADD at
//   hello, ZPOPMIN to take the oldest, ZREM when a waiting person leaves.
// - Operators' free capacity: a sorted set, p:free, of the on-duty operators (by socket id)
//   scored by their free slots (capacity − offered − active), so the one with the most is
//   ZREVRANGE 0 0; p:used keeps each operator's used slots while off duty.
// - A conversation: a hash p:c:<id> with its operator, state (offered, active) and seq (HINCRBY).
//
// Everything that reads and then writes is one Lua script (one Redis, not Redis Cluster: the
// scripts name conversation keys they build themselves), so that it is atomic across nodes:
// `dispatch` (take the oldest waiting person and the operator with the most free slots, count
// the slot used, mark the offer), `accept` (only the offered operator; the join's seq),
// `say` (an operator's message: only to its own active conversation; the seq), `leave` (a
// person gone: out of the queue, or the operator's slot back), `duty` (on duty with the slots
// not in use). These are the simplest correct commands: WATCH/MULTI would need retry loops
// under contention, and one script a step is one round trip.
//
// No log, no resume, no authentication: like the single-process peer, the least that works.
//   REDIS_URL=redis://127.0.0.1:6379/ PEER_NODE=0 node socketio-redis-server.js
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const Redis = require('ioredis');
const { CAPACITY, frames, newId, wire } = require('./hub');

const QUEUE = 'p:queue';
const FREE = 'p:free';
const USED = 'p:used';
const CONV = 'p:c:';
// At most this many offers a dispatch call: a long queue never holds Redis in one script.
const BATCH = 64;

const redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379/');
const sub = redis.duplicate();

redis.defineCommand('dispatch', {
  numberOfKeys: 3,
  lua: `
    local out = {}
    for _ = 1, tonumber(ARGV[2]) do
      local best = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
      if #best == 0 or tonumber(best[2]) < 1 then break end
      local head = redis.call('ZPOPMIN', KEYS[1])
      if #head == 0 then break end
      local op = best[1]
      redis.call('ZINCRBY', KEYS[2], -1, op)
      redis.call('HINCRBY', KEYS[3], op, 1)
      redis.call('HSET', ARGV[1] .. head[1], 'op', op, 'state', 'offered')
      out[#out + 1] = head[1]
      out[#out + 1] = op
      out[#out + 1] = head[2]
    end
    return out`,
});
redis.defineCommand('accept', {
  numberOfKeys: 1,
  lua: `
    if redis.call('HGET', KEYS[1], 'op') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'offered' then
      return false
    end
    redis.call('HSET', KEYS[1], 'state', 'active')
    return redis.call('HINCRBY', KEYS[1], 'seq', 1)`,
});
redis.defineCommand('say', {
  numberOfKeys: 1,
  lua: `
    if redis.call('HGET', KEYS[1], 'op') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'active' then
      return false
    end
    return redis.call('HINCRBY', KEYS[1], 'seq', 1)`,
});
redis.defineCommand('leave', {
  numberOfKeys: 4,
  lua: `
    local op = redis.call('HGET', KEYS[1], 'op')
    redis.call('DEL', KEYS[1])
    if not op then
      redis.call('ZREM', KEYS[2], ARGV[1])
      return 0
    end
    -- The slot back, unless the operator has left since (its counters went with it).
    if redis.call('HEXISTS', KEYS[4], op) == 0 then return 0 end
    redis.call('HINCRBY', KEYS[4], op, -1)
    redis.call('ZADD', KEYS[3], 'XX', 'INCR', 1, op)
    return 1`,
});
redis.defineCommand('duty', {
  numberOfKeys: 2,
  lua: `
    local used = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
    redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) - used, ARGV[1])`,
});

const server = http.createServer();
const io = new Server(server, { transports: ['websocket'], maxHttpBufferSize: 16384, serveClient: false });
io.adapter(createAdapter(redis, sub));
const visitors = io.of('/visitor');
const operators = io.of('/operator');

// A log entry goes to both sides of the conversation, wherever their sockets are.
function emit(conv, seq, event) {
  const frame = wire.event(conv, seq, event);
  visitors.to(conv).emit('m', frame);
  operators.to(conv).emit('m', frame);
}

// Offers every waiting person an on-duty operator with free slots can take, oldest first.
async function dispatch() {
  for (;;) {
    const out = await redis.dispatch(QUEUE, FREE, USED, CONV, BATCH);
    for (let i = 0; i < out.length; i += 3) {
      operators.to(out[i + 1]).emit('m', wire.offer(out[i], Date.now() - Number(out[i + 2])));
    }
    if (out.length < 3 * BATCH) return;
  }
}

// A Redis failure drops the frame (and says so); the peer keeps serving the others.
function guard(work) {
  return (m) => work(m).catch((e) => console.error(`socketio-redis: ${e.message}`));
}

visitors.on('connection', (socket) => {
  const send = (m) => socket.emit('m', m);
  let conv = null;
  const frame = frames(send, {
    hello: guard(async () => {
      if (conv) return;
      conv = newId();
      socket.join(conv);
      send(wire.visitorWelcome(conv));
      // One connection, commands in order: the ZADD is done before the script runs.
      await Promise.all([redis.zadd(QUEUE, Date.now(), conv), dispatch()]);
    }),
    send: guard(async (m) => {
      if (!conv) return send({ type: 'error', id: m.id, code: 'out_of_order' });
      const seq = await redis.hincrby(CONV + conv, 'seq', 1);
      emit(conv, seq, { kind: 'message', from: 'visitor', id: m.id, text: m.text });
      send({ type: 'ack', id: m.id, seq });
    }),
  });
  socket.on('m', (m) => { if (m && typeof m === 'object') frame(m); });
  socket.on('disconnect', guard(async () => {
    if (!conv) return;
    const freed = await redis.leave(CONV + conv, QUEUE, FREE, USED, conv);
    if (freed) await dispatch();
  }));
});

operators.on('connection', (socket) => {
  const send = (m) => socket.emit('m', m);
  const me = socket.id;
  const frame = frames(send, {
    hello: guard(async () => send(wire.operatorWelcome(CAPACITY))),
    presence: guard(async (m) => {
      const onDuty = m.state === 'on_duty';
      if (onDuty) await redis.duty(FREE, USED, me, CAPACITY);
      else await redis.zrem(FREE, me);
      const used = Number((await redis.hget(USED, me)) || 0);
      send({ type: 'presence', state: m.state, load: used, capacity: CAPACITY });
      if (onDuty) await dispatch();
    }),
    accept: guard(async (m) => {
      const conv = String(m.conversation);
      const seq = await redis.accept(CONV + conv, me);
      if (seq === null) return send({ type: 'error', id: m.id, code: 'not_found' });
      socket.join(conv);
      send({ type: 'ack', id: m.id });
      send(wire.conversation(conv, seq - 1));
      emit(conv, seq, { kind: 'operator_joined', operator: 'Op' });
    }),
    send: guard(async (m) => {
      const conv = String(m.conversation);
      const seq = await redis.say(CONV + conv, me);
      if (seq === null) return send({ type: 'error', id: m.id, code: 'not_found' });
      emit(conv, seq, { kind: 'message', from: 'operator', id: m.id, text: m.text, operator: 'Op' });
      send({ type: 'ack', id: m.id, seq });
    }),
  });
  socket.on('m', (m) => { if (m && typeof m === 'object') frame(m); });
  socket.on('disconnect', guard(async () => {
    await redis.multi().zrem(FREE, me).hdel(USED, me).exec();
  }));
});

// Listening only once the adapter's subscriptions are in place: commands on one connection run
// in order, so when this SUBSCRIBE is answered, so are the adapter's. Before that, another
// node's broadcast would not reach this one.
sub.subscribe(`p:node:${process.env.PEER_NODE || 0}`).then(() => {
  server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
    console.log(`listening http://127.0.0.1:${server.address().port}`);
  });
}, (e) => {
  console.error(`socketio-redis: ${e.message}`);
  process.exit(1);
});
