// The operator websocket (/ws/operator): connecting, `hello` with the last seq of every
// conversation held, reconnecting with backoff, the heartbeat, and commands waiting for their
// ack. Owns the connection, its timers and the pending commands; the connection status in the
// status bar is drawn here. Frames received go to the page's onFrame.

import { t, setText } from '/console/i18n.js';
import { ulid } from '/console/ulid.js';
import { getMe } from '/console/auth.js';
import { $, byIds, byTestId, toast } from '/console/util.js';

const E = {
  ...byIds('conn-text', 'reconnect-here'),
  conn: byTestId('connection-status'),
};

let ws = null;
let welcomed = false;
let stopped = true;            // true while logged out or superseded: no reconnect
let everConnected = false;
let attempt = 0;
let failedOpens = 0;
let reconnectTimer = null;
let reconnectAt = 0;
let pingTimer = null;
let lastRx = 0;
let heartbeatMs = 15000;
/** client message id -> { type, conversation, onAck, onError, onInterrupt } */
const pending = new Map();

let hooks = {
  onFrame: () => {},           // every parsed frame
  lastSeqs: () => ({}),        // conversation id -> last seq held, for `hello`
  onDown: () => {},            // the socket closed or went silent: disable live controls
  onExpired: () => {},         // the session is gone: back to the login form
};

export function initSocket(h) { hooks = h; }

export function isWelcomed() { return welcomed; }
export function isStopped() { return stopped; }
export function hasSocket() { return !!ws; }

function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws/operator`;
}

/** Starts (or restarts, after "use here") a session's connection. */
export function startConnection() {
  stopped = false;
  attempt = 0;
  failedOpens = 0;
  connectNow();
}

export function connectNow() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  if (stopped) return;
  if (ws) return;
  welcomed = false;
  setConn(everConnected ? 'reconnecting' : 'connecting');
  E.reconnectHere.hidden = true;
  let socket;
  try {
    socket = new WebSocket(wsUrl());
  } catch (e) {
    scheduleReconnect();
    return;
  }
  ws = socket;
  let opened = false;
  socket.addEventListener('open', () => {
    if (ws !== socket) return;
    opened = true;
    lastRx = Date.now();
    rawSend({ type: 'hello', v: 1, id: ulid(), last_seqs: hooks.lastSeqs() });
  });
  socket.addEventListener('message', (e) => {
    if (ws !== socket) return;
    lastRx = Date.now();
    if (typeof e.data !== 'string') return;
    let msg;
    try { msg = JSON.parse(e.data); } catch (_) { return; }
    if (!msg || typeof msg !== 'object') return;
    try { hooks.onFrame(msg); } catch (err) { console.error('console: failed to handle', msg && msg.type, err); }
  });
  socket.addEventListener('close', (e) => {
    if (ws !== socket) return;
    ws = null;
    welcomed = false;
    stopPing();
    hooks.onDown();
    onClosed(e.code, opened);
  });
  socket.addEventListener('error', () => { /* close follows */ });
}

async function onClosed(code, opened) {
  if (stopped) return;
  if (code === 4001 || code === 4010) { hooks.onExpired(); return; }
  if (code === 4009) {
    stopped = true;
    setConn('offline', 'conn.superseded');
    E.reconnectHere.hidden = false;
    toast(t('conn.superseded'), 'error', { timeout: 0 });
    return;
  }
  if (code === 4002) {
    stopped = true;
    setConn('offline', 'conn.version');
    return;
  }
  if (!opened) {
    // The upgrade itself failed: maybe the session is gone (401 before the websocket exists).
    failedOpens += 1;
    if (failedOpens >= 2) {
      const r = await getMe();
      if (stopped) return;
      if (r.status === 401) { hooks.onExpired(); return; }
    }
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  if (stopped) return;
  const base = Math.min(10000, 500 * 2 ** attempt);
  const delay = Math.max(500, Math.round(base / 2 + Math.random() * (base / 2)));
  attempt += 1;
  reconnectAt = Date.now() + delay;
  setConn('reconnecting', 'conn.reconnectingIn', { s: Math.ceil(delay / 1000) });
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connectNow, delay);
}

/** No more reconnects (logout, or about to log out). */
export function stopReconnecting() { stopped = true; }

/** Closes the connection for good and forgets what was pending (logout, expired session). */
export function disconnect() {
  stopped = true;
  clearTimeout(reconnectTimer);
  stopPing();
  if (ws) {
    const socket = ws;
    ws = null;
    try { socket.close(1000, 'logout'); } catch (_) { /* ignore */ }
  }
  welcomed = false;
  everConnected = false;
  pending.clear();
  setConn('offline');
}

/** The server said `welcome`: the session is live (heartbeat_ms from the welcome, if sane). */
export function welcome(m) {
  welcomed = true;
  everConnected = true;
  attempt = 0;
  failedOpens = 0;
  setConn('connected');
  if (Number.isFinite(m.heartbeat_ms) && m.heartbeat_ms >= 1000) heartbeatMs = m.heartbeat_ms;
}

/** A chat message (type `send`) waits for its ack under `id`. */
export function track(id, entry) { pending.set(id, entry); }
export function untrack(id) { pending.delete(id); }
export function tracked(id) { return pending.get(id); }

/** A new welcome: commands other than chat sends that were in flight are forgotten. */
export function interruptCommands() {
  for (const [id, p] of pending) {
    if (p.type === 'send') continue;
    pending.delete(id);
    if (p.onInterrupt) { try { p.onInterrupt(); } catch (err) { console.error(err); } }
  }
}

export function rawSend(obj) {
  const socket = ws;
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  try { socket.send(JSON.stringify(obj)); return true; } catch (_) { return false; }
}

/** Send a frame once the session is welcomed. Returns false if not connected. */
export function sendFrame(obj) {
  if (!welcomed) return false;
  return rawSend(obj);
}

/**
 * Send a client command with a fresh ULID; handlers get the matching ack / error.
 * If not connected, onError({code:'not_connected'}) is called at once. onInterrupt() is called
 * if the socket was replaced before an answer came (the outcome is then unknown).
 */
export function command(type, fields = {}, handlers = {}) {
  // handlers.id: a client id to reuse, so that a retry is applied once (see `flag`).
  const id = handlers.id || ulid();
  const entry = { type, conversation: fields.conversation, ...handlers };
  pending.set(id, entry);
  if (!sendFrame({ type, id, ...fields })) {
    pending.delete(id);
    if (entry.onError) entry.onError({ code: 'not_connected' });
    else toast(t('error.notConnected'), 'error');
    return null;
  }
  return id;
}

export function startPing() {
  stopPing();
  pingTimer = setInterval(() => {
    if (!ws) return;
    if (Date.now() - lastRx > 3 * heartbeatMs) {
      // The server went silent: drop the socket and reconnect.
      const socket = ws;
      ws = null;
      welcomed = false;
      try { socket.close(4000, 'heartbeat'); } catch (_) { /* ignore */ }
      stopPing();
      hooks.onDown();
      scheduleReconnect();
      return;
    }
    rawSend({ type: 'ping', id: ulid() });
  }, heartbeatMs);
}

function stopPing() {
  clearInterval(pingTimer);
  pingTimer = null;
}

export function setConn(st, key, vars) {
  E.conn.dataset.state = st === 'connecting' ? 'reconnecting' : st;
  const k = key || `conn.${st}`;
  setText(E.connText, k, vars);
}

/** Once a second: the countdown to the next reconnect. */
export function tickSocket() {
  if (reconnectTimer && E.conn.dataset.state === 'reconnecting') {
    const s = Math.max(0, Math.ceil((reconnectAt - Date.now()) / 1000));
    setText(E.connText, 'conn.reconnectingIn', { s });
  }
}

E.reconnectHere.addEventListener('click', () => {
  stopped = false;
  attempt = 0;
  E.reconnectHere.hidden = true;
  connectNow();
});
