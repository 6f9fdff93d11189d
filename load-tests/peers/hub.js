// The visitor-queue-operator logic every peer server shares: a FIFO queue of waiting visitors,
// operators with a capacity, offers that an operator accepts, and messages relayed between the
// two sides of a conversation. It speaks the same JSON frames as the gateway (docs/protocol.md),
// a minimal subset: visitor hello(start)/send/ping, operator hello/presence/accept/send/ping.
// A transport (ws, Socket.IO, Bun) calls `visitor(send)` / `operator(send)` for each new socket
// and feeds each text frame, already parsed, to the returned connection's `frame(msg)`.
'use strict';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
// Processes sharing one Redis (socketio-redis-server.js) each count from their own base,
// PEER_NODE × 2^45, so that their ids never meet (3 × 2^45 is far below 2^53).
let counter = Number(process.env.PEER_NODE || 0) * 2 ** 45;
// 26 characters, like the gateway's ULIDs, so frames have the same sizes.
function newId() {
  counter += 1;
  let n = counter;
  let s = '';
  for (let i = 0; i < 26; i++) {
    s = ALPHABET[n % 32] + s;
    n = Math.floor(n / 32);
  }
  return s;
}

// A connection's frame handler: `handlers` by frame type (others are ignored), and the ping
// every side answers with a pong.
function frames(send, handlers) {
  return (m) => {
    if (m.type === 'ping') return send({ type: 'pong', id: m.id });
    if (Object.hasOwn(handlers, m.type)) handlers[m.type](m);
  };
}

const LIMITS = { max_text: 4000, max_frame: 16384, max_note: 500 };

// The frames the server sends, shared by every peer so that they have the same shapes and sizes.
const wire = {
  visitorWelcome: (conversation) => ({ type: 'welcome', v: 1, conversation, token: newId(), state: 'queued',
    resumed: false, last_seq: 0, heartbeat_ms: 15000, limits: LIMITS }),
  operatorWelcome: (capacity) => ({ type: 'welcome', v: 1, operator: { id: newId(), name: 'Op', role: 'operator' },
    presence: 'off_duty', capacity, heartbeat_ms: 15000, conversations: [], offers: [], limits: LIMITS }),
  offer: (conversation, waitedMs) => ({ type: 'offer', conversation, channel: 'web', language: 'ja', waited_ms: waitedMs,
    expires_in_ms: 30000, transfer: null }),
  conversation: (id, lastSeq) => ({ type: 'conversation', conversation: { id, state: 'active', channel: 'web',
    language: 'ja', started_at: Date.now(), last_seq: lastSeq, visitor_connected: true } }),
  event: (conversation, seq, event) => ({ type: 'event', conversation, seq, at: Date.now(), event }),
};

// Every operator's capacity: the peers take anyone, and never limit an operator.
const CAPACITY = 1000000;

class Hub {
  constructor() {
    this.queue = []; // waiting conversations, oldest first
    this.operators = new Set();
    this.conversations = new Map();
  }

  visitor(send) {
    const hub = this;
    const conn = { send, conv: null };
    conn.frame = frames(send, {
      hello() {
        const conv = { id: newId(), seq: 0, visitor: conn, operator: null, offeredTo: null, queuedAt: Date.now() };
        conn.conv = conv;
        hub.conversations.set(conv.id, conv);
        send(wire.visitorWelcome(conv.id));
        hub.queue.push(conv);
        hub.dispatch();
      },
      send(m) {
        const conv = conn.conv;
        if (!conv) return send({ type: 'error', id: m.id, code: 'out_of_order' });
        hub.append(conv, { kind: 'message', from: 'visitor', id: m.id, text: m.text });
        send({ type: 'ack', id: m.id, seq: conv.seq });
      },
    });
    conn.close = () => {
      const conv = conn.conv;
      if (!conv) return;
      hub.conversations.delete(conv.id);
      const i = hub.queue.indexOf(conv);
      if (i >= 0) hub.queue.splice(i, 1);
      if (conv.operator) conv.operator.load -= 1;
      conv.visitor = null;
    };
    return conn;
  }

  operator(send) {
    const hub = this;
    const conn = { send, onDuty: false, load: 0, capacity: CAPACITY, offers: 0 };
    conn.frame = frames(send, {
      hello() {
        send(wire.operatorWelcome(conn.capacity));
        hub.operators.add(conn);
      },
      presence(m) {
        conn.onDuty = m.state === 'on_duty';
        send({ type: 'presence', state: m.state, load: conn.load, capacity: conn.capacity });
        hub.dispatch();
      },
      accept(m) {
        const conv = hub.conversations.get(m.conversation);
        if (!conv || conv.offeredTo !== conn) return send({ type: 'error', id: m.id, code: 'not_found' });
        conv.operator = conn;
        conv.offeredTo = null;
        conn.offers -= 1;
        conn.load += 1;
        send({ type: 'ack', id: m.id });
        send(wire.conversation(conv.id, conv.seq));
        hub.append(conv, { kind: 'operator_joined', operator: 'Op' });
      },
      send(m) {
        const conv = hub.conversations.get(m.conversation);
        if (!conv || conv.operator !== conn) return send({ type: 'error', id: m.id, code: 'not_found' });
        hub.append(conv, { kind: 'message', from: 'operator', id: m.id, text: m.text, operator: 'Op' });
        send({ type: 'ack', id: m.id, seq: conv.seq });
      },
    });
    conn.close = () => {
      hub.operators.delete(conn);
    };
    return conn;
  }

  // A log entry goes to both sides of the conversation, as in the gateway.
  append(conv, event) {
    conv.seq += 1;
    const frame = wire.event(conv.id, conv.seq, event);
    if (conv.visitor) conv.visitor.send(frame);
    if (conv.operator) conv.operator.send(frame);
  }

  // Oldest waiting conversation first, to the on-duty operator with the most free capacity.
  dispatch() {
    while (this.queue.length > 0) {
      let best = null;
      for (const op of this.operators) {
        if (!op.onDuty) continue;
        const free = op.capacity - op.load - op.offers;
        if (free > 0 && (!best || free > best.capacity - best.load - best.offers)) best = op;
      }
      if (!best) return;
      const conv = this.queue.shift();
      conv.offeredTo = best;
      best.offers += 1;
      best.send(wire.offer(conv.id, Date.now() - conv.queuedAt));
    }
  }
}

module.exports = { Hub, CAPACITY, frames, newId, wire };
