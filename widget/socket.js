// The visitor websocket (/ws/visitor): connecting with `hello` (start or resume), the
// handshake timeout, reconnecting with backoff, the heartbeat, and the connection status shown
// to the person. Owns the socket, its timers and the connection state; the frames go to the
// page's onFrame, and what a close means for the conversation to onClosed.

import { ulid } from '/console/ulid.js';
import { $ } from './dom.js';
import { t } from './texts.js';

const PROTOCOL_VERSION = 1;
const HANDSHAKE_TIMEOUT_MS = 10000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 10000;

let ws = null;
let welcomed = false;
let connState = 'offline';
let connReason = '';
let attempt = 0;
let retryTimer = null;
let handshakeTimer = null;
let heartbeatTimer = null;
let heartbeatMs = 15000;
let lastRx = 0;
let superseded = false;
let fatal = false;
let helloId = null;

let hooks = {
  canConnect: () => true,     // false once the conversation ended or the person left
  hello: () => ({}),          // `start` or `resume` for the hello frame
  hasToken: () => false,
  onFrame: () => {},
  onClosed: () => {},         // (code): the conversation's view of a close; returns nothing
};

export function initSocket(h) { hooks = h; }

export function hasSocket() { return !!ws; }
export function isSuperseded() { return superseded; }
export function isFatal() { return fatal; }
export function setFatal() { fatal = true; }
export function isHello(id) { return !!id && id === helloId; }

export function socketOpen() {
  return !!(ws && ws.readyState === 1 && welcomed);
}

export function wsSend(obj) {
  if (!socketOpen()) return false;
  try {
    ws.send(JSON.stringify(obj));
    return true;
  } catch (e) {
    return false;
  }
}

export function setConn(state, reason) {
  connState = state;
  connReason = reason || '';
  renderConn();
}

export function renderConn() {
  const el = $('connection-status');
  el.setAttribute('data-state', connState);
  let key;
  if (connReason === 'superseded') key = 'conn_superseded';
  else if (connState === 'connected') key = 'conn_connected';
  else if (connState === 'offline') key = 'conn_offline';
  else if (connReason === 'connecting') key = 'conn_connecting';
  else key = 'conn_reconnecting';
  $('connection-text').textContent = t(key);
  $('reconnect-here').hidden = connReason !== 'superseded';
  $('composer').classList.toggle('is-offline', connState !== 'connected');
}

export function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (ws || fatal || !hooks.canConnect()) return;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/visitor`;
  let socket;
  try {
    socket = new WebSocket(url);
  } catch (e) {
    scheduleReconnect();
    return;
  }
  ws = socket;
  welcomed = false;
  superseded = false;
  if (connState !== 'offline') setConn('reconnecting', hooks.hasToken() || attempt ? '' : 'connecting');
  clearTimeout(handshakeTimer);
  handshakeTimer = setTimeout(() => {
    if (ws === socket && !welcomed) dropSocket(); // a connection that never says welcome
  }, HANDSHAKE_TIMEOUT_MS);

  socket.onopen = () => {
    if (ws !== socket) return;
    const hello = { type: 'hello', v: PROTOCOL_VERSION, id: ulid(), ...hooks.hello() };
    helloId = hello.id;
    try { socket.send(JSON.stringify(hello)); } catch (e) { /* onclose follows */ }
  };
  socket.onmessage = (ev) => {
    if (ws !== socket) return;
    lastRx = Date.now();
    if (typeof ev.data !== 'string') return;
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg && typeof msg === 'object') hooks.onFrame(msg);
  };
  socket.onerror = () => { /* a close event always follows */ };
  socket.onclose = (ev) => {
    if (ws !== socket) return;
    onSocketClosed(ev.code);
  };
}

/** Drops the current socket (if any) and reconnects with backoff. */
export function dropSocket() {
  const socket = ws;
  if (!socket) return;
  ws = null;
  try { socket.close(); } catch (e) { /* already closing */ }
  onSocketClosed(1006);
}

export function resetSocketTimers() {
  clearTimeout(handshakeTimer);
  clearInterval(heartbeatTimer);
  heartbeatTimer = null;
}

function onSocketClosed(code) {
  ws = null;
  welcomed = false;
  resetSocketTimers();
  hooks.onClosed(code);
}

/** A close the conversation did not end: 4009 superseded, 4002 version, else reconnect. */
export function afterClose(code) {
  if (code === 4009) {
    // Superseded: the same conversation was opened in another window (e.g. a duplicated tab).
    // Do not fight over it; let the person choose to continue here.
    superseded = true;
    setConn('offline', 'superseded');
    return 'superseded';
  }
  if (code === 4002) {
    fatal = true;
    setConn('offline');
    return 'version';
  }
  scheduleReconnect();
  return 'reconnecting';
}

function scheduleReconnect() {
  if (retryTimer || fatal || superseded || !hooks.canConnect()) return;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
  const delay = Math.min(BACKOFF_MAX_MS, base * (0.8 + Math.random() * 0.4)); // ±20 % jitter
  attempt = Math.min(attempt + 1, 20);
  setConn(navigator.onLine === false ? 'offline' : 'reconnecting');
  retryTimer = setTimeout(() => {
    retryTimer = null;
    connect();
  }, delay);
}

/** "Continue here", back online, or a page shown again: connect now rather than wait. */
export function reconnectNow() {
  if (fatal) return;
  superseded = false;
  if (ws) {
    if (socketOpen()) { setConn('connected'); wsSend({ type: 'ping', id: ulid() }); }
    return;
  }
  clearTimeout(retryTimer);
  retryTimer = null;
  attempt = 0;
  setConn('reconnecting');
  connect();
}

/** The server said welcome: the connection is live. */
export function welcome(msg) {
  clearTimeout(handshakeTimer);
  welcomed = true;
  attempt = 0;
  heartbeatMs = Math.max(1000, Number(msg.heartbeat_ms) || 15000);
}

export function startHeartbeat() {
  clearInterval(heartbeatTimer);
  heartbeatTimer = setInterval(() => {
    if (!socketOpen()) return;
    // Nothing (not even a pong) for a long time: the connection is dead even if it looks open.
    if (Date.now() - lastRx > heartbeatMs * 2.5) { dropSocket(); return; }
    wsSend({ type: 'ping', id: ulid() });
  }, heartbeatMs);
}

/** Too many new conversations from this network: drop and retry after `wait` ms. */
export function retryHelloAfter(wait) {
  clearTimeout(handshakeTimer);
  handshakeTimer = setTimeout(() => { dropSocket(); }, wait);
}

/** A new conversation: a fresh backoff and no "opened elsewhere". */
export function resetConnection() {
  superseded = false;
  attempt = 0;
}

/** The conversation is over: no reconnect, close the socket (sending `last` first, if open). */
export function closeForGood(last) {
  clearTimeout(retryTimer); retryTimer = null;
  resetSocketTimers();
  const socket = ws;
  ws = null;
  welcomed = false;
  if (socket) {
    if (last) { try { if (socket.readyState === 1) socket.send(JSON.stringify(last)); } catch (e) { /* closed */ } }
    try { socket.close(1000); } catch (e) { /* closed */ }
  }
}
