// The visitor-queue-operator logic every peer server shares: a FIFO queue of waiting visitors,
// operators with a capacity, offers that an operator accepts, and messages relayed between the
// two sides of a conversation. It speaks the same JSON frames as the gateway (docs/protocol.md),
// a minimal subset: visitor hello(start)/send/ping, operator hello/presence/accept/send/ping.
// A transport (ws, Socket.IO, Bun) calls `visitor(send)` / `operator(send)` for each new socket
// and feeds each text frame, already parsed, to the returned connection's `frame(msg)`.
'use strict';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
let counter = 0;
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
        send({ type: 'welcome', v: 1, conversation: conv.id, token: newId(), state: 'queued',
          resumed: false, last_seq: 0, heartbeat_ms: 15000, limits: { max_text: 4000, max_frame: 16384, max_note: 500 } });
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
    const conn = { send, onDuty: false, load: 0, capacity: 1000000, offers: 0 };
    conn.frame = frames(send, {
      hello() {
        send({ type: 'welcome', v: 1, operator: { id: newId(), name: 'Op', role: 'operator' },
          presence: 'off_duty', capacity: conn.capacity, heartbeat_ms: 15000, conversations: [], offers: [],
          limits: { max_text: 4000, max_frame: 16384, max_note: 500 } });
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
        send({ type: 'conversation', conversation: { id: conv.id, state: 'active', channel: 'web',
          language: 'ja', started_at: Date.now(), last_seq: conv.seq, visitor_connected: true } });
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
    const frame = { type: 'event', conversation: conv.id, seq: conv.seq, at: Date.now(), event };
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
      best.send({ type: 'offer', conversation: conv.id, channel: 'web', language: 'ja', waited_ms: Date.now() - conv.queuedAt,
        expires_in_ms: 30000, transfer: null });
    }
  }
}

module.exports = { Hub };
