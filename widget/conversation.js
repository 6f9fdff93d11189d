// The person's conversation as the server tells it (docs/protocol.md, "Visitor messages"):
// welcome (start or resume), queue position, log entries in seq order, acks of own messages
// and of `end`, errors. Owns the token, the conversation id, the seqs seen and acknowledged,
// the outbox (messages not yet acknowledged, re-sent with the SAME client id: the server applies
// a retried id once), the pending `end`, and whether an operator is present.

import { ulid } from '/console/ulid.js';
import { $ } from './dom.js';
import { t, currentLang, wireLang } from './texts.js';
import { saveStore } from './store.js';
import { wsSend, welcome, startHeartbeat, setConn, setFatal, isHello, retryHelloAfter } from './socket.js';
import {
  createMessage, markSent, markFailed, addSystem, placeBySeq, appendPending, clearMessages,
  ownElement, rememberOwn,
} from './messages.js';
import { showRemoteTyping, showError } from './composer.js';
import { screen, conversationEnded, conversationLost } from './lifecycle.js';

const MAX_TEXT = 4000;          // Unicode scalar values, after trimming (protocol)
const MAX_FRAME = 16384;        // bytes (protocol)
const ACK_DELAY_MS = 250;

let token = null;
let conversation = null;
let lastSeq = 0;          // highest log seq rendered
let ackedSeq = 0;         // highest seq acknowledged to the server
let outbox = [];          // [{id, text, at}] sent by the person, not yet acknowledged
let endId = null;         // client id of a requested `end` not yet confirmed by `ended`
let ended = false;
let notFound = false;
let operatorPresent = false;
let queue = null;
let requeued = false;
const limits = { max_text: MAX_TEXT, max_frame: MAX_FRAME };
let ackTimer = null;
let outboxRetryTimer = null;
let busyTimer = null;

export function maxText() { return limits.max_text; }
export function maxFrame() { return limits.max_frame; }
export function isEnded() { return ended; }
export function isNotFound() { return notFound; }
export function hasToken() { return !!token; }
export function hasEndPending() { return !!endId; }

/** What session storage keeps of the conversation. */
export function stored() {
  return { token, conversation, last_seq: lastSeq, outbox, end_id: endId };
}

/** `start` (a new conversation, in the person's language) or `resume` for the hello frame. */
export function helloFields() {
  if (token) return { resume: { token, last_seq: lastSeq } };
  return { start: { lang: wireLang(currentLang()) } };
}

/** Same tab, after a reload: the stored conversation, replayed from seq 0 by the server. */
export function resume(saved) {
  token = saved.token;
  conversation = saved.conversation || null;
  outbox = Array.isArray(saved.outbox) ? saved.outbox.filter((x) =>
    x && typeof x.id === 'string' && typeof x.text === 'string') : [];
  endId = saved.end_id || null;
  lastSeq = 0;
  outbox.forEach(appendPending);
}

/** A new conversation: nothing held. */
export function resetConversationState() {
  token = null;
  conversation = null;
  lastSeq = 0;
  ackedSeq = 0;
  outbox = [];
  endId = null;
  ended = false;
  notFound = false;
  operatorPresent = false;
  queue = null;
  requeued = false;
}

/** The conversation is over (ended, lost or gone): stop its timers and forget it. */
export function finishConversationState() {
  ended = true;
  clearTimeout(ackTimer); ackTimer = null;
  clearTimeout(outboxRetryTimer);
}

export function forgetConversation() {
  token = null;
  conversation = null;
  outbox = [];
  endId = null;
}

/** Back to the first screen after an end. */
export function startAgainState() {
  ended = false;
  notFound = false;
}

/** Queues an own message: kept (and stored) until acknowledged, shown as pending, sent. */
export function queueOwn(item, shown) {
  outbox.push(item);
  saveStore();
  appendPending(item);
  shown();
  sendOutboxItem(item); // if the socket is down it goes out after the next welcome
}

/** Asks to end, once: the same id is re-sent after a reconnect until `ended` comes. */
export function requestEnd() {
  endId = endId || ulid();
  saveStore();
  wsSend({ type: 'end', id: endId }); // or after the next welcome
}

export function onFrame(msg) {
  switch (msg.type) {
    case 'welcome': onWelcome(msg); break;
    case 'queue': onQueue(msg); break;
    case 'event': onEvent(msg); break;
    case 'typing': if (msg.from === 'operator') showRemoteTyping(!!msg.active); break;
    case 'ack': onAck(msg); break;
    case 'error': onError(msg); break;
    case 'pong': break;
    case 'gone': onGone(msg); break;
    default: break;
  }
}

function onWelcome(msg) {
  welcome(msg);
  if (conversation && msg.conversation && msg.conversation !== conversation) {
    // A different conversation than the one on screen: start the view afresh.
    lastSeq = 0;
    ackedSeq = 0;
    clearMessages(outbox);
  }
  token = msg.token || token;
  conversation = msg.conversation || conversation;
  if (msg.limits) {
    limits.max_text = Number(msg.limits.max_text) || MAX_TEXT;
    limits.max_frame = Number(msg.limits.max_frame) || MAX_FRAME;
  }
  saveStore();
  setConn('connected');
  startHeartbeat();

  if (msg.state === 'active') {
    operatorPresent = true;
    renderQueue();
  } else if (msg.state === 'queued') {
    operatorPresent = false;
    renderQueue();
  } else if (msg.state === 'ended' && Number(msg.last_seq) <= lastSeq) {
    // Everything, including the end, was already shown here.
    conversationEnded(null);
    return;
  }

  // Re-send what the server has not acknowledged, with the same ids (it dedupes).
  outbox.forEach((item) => { sendOutboxItem(item); });
  if (endId) wsSend({ type: 'end', id: endId });
  // Let the replay settle before the log is announced live again.
  clearTimeout(busyTimer);
  busyTimer = setTimeout(() => { $('messages').removeAttribute('aria-busy'); }, 800);
}

function onQueue(msg) {
  queue = {
    position: Number(msg.position) || 0,
    wait_minutes: (msg.wait_minutes === null || msg.wait_minutes === undefined) ? null : Number(msg.wait_minutes),
    operators_on_duty: Number(msg.operators_on_duty) || 0,
    overloaded: msg.overloaded === true,
  };
  renderQueue();
}

export function renderQueue() {
  const panel = $('queue-panel');
  const waiting = screen() === 'chat' && !operatorPresent && !ended;
  panel.hidden = !waiting;
  if (!waiting) return;
  const pos = $('queue-position');
  const wait = $('queue-wait');
  const none = $('queue-none');
  const busy = $('queue-overloaded');
  const q = queue;
  if (!q || !q.position) {
    pos.textContent = requeued ? t('queue_requeued') : t('queue_connecting');
    wait.textContent = '';
    none.hidden = true;
    busy.hidden = true;
    return;
  }
  pos.textContent = t('queue_position', { position: q.position });
  // Overloaded mode: many people are reaching out; they may keep waiting, and other
  // helplines are listed (the same list as when nobody is on duty).
  busy.hidden = !q.overloaded;
  if (q.wait_minutes === null) {
    // No estimate: nobody is on duty (say so, with other helplines), or nothing to base one on
    // yet (say nothing rather than a made-up number).
    wait.textContent = '';
    const nobody = q.operators_on_duty === 0;
    none.hidden = q.overloaded || !nobody;
    if (nobody) $('queue-helplines').open = true;
  } else {
    none.hidden = true;
    wait.textContent = q.wait_minutes <= 1 ? t('queue_wait_soon') : t('queue_wait_minutes', { minutes: q.wait_minutes });
    if (q.overloaded) $('queue-helplines').open = true;
  }
}

function onEvent(msg) {
  const seq = Number(msg.seq);
  if (!seq || seq <= lastSeq) return; // already rendered: never twice
  if (conversation && msg.conversation && msg.conversation !== conversation) return;
  const e = msg.event || {};
  const at = Number(msg.at) || Date.now();
  let el;
  switch (e.kind) {
    case 'message':
      if (e.from === 'visitor') {
        el = e.id ? ownElement(e.id) : null;
        if (el) {
          removeFromOutbox(e.id);
        } else {
          el = createMessage('visitor', e.text || '', at, e.operator);
          if (e.id) rememberOwn(e.id, el);
        }
        markSent(el, seq);
      } else {
        el = createMessage(e.from === 'operator' ? 'operator' : 'system', e.text || '', at, e.operator);
        el.setAttribute('data-seq', String(seq));
        if (e.from === 'operator') showRemoteTyping(false);
      }
      placeBySeq(el, seq);
      break;
    case 'operator_joined':
      operatorPresent = true;
      requeued = false;
      queue = null;
      addSystem(e.operator ? t('sys_operator_joined', { operator: e.operator }) : t('sys_operator_joined_anon'), seq, at);
      renderQueue();
      break;
    case 'operator_left':
      operatorPresent = false;
      requeued = true;
      queue = null;
      showRemoteTyping(false);
      addSystem(t(e.reason === 'transferred' ? 'sys_operator_left_transferred' : 'sys_operator_left_requeued'), seq, at);
      renderQueue();
      break;
    case 'ended':
      addSystem(endedText(e), seq, at);
      break;
    default:
      break; // unknown kinds are skipped but still acknowledged
  }
  lastSeq = seq;
  if (e.kind === 'ended') {
    wsSend({ type: 'ack', id: ulid(), seq });
    ackedSeq = seq;
    conversationEnded(e);
    return;
  }
  saveStore();
  scheduleAck();
}

export function endedText(e) {
  if (!e) return t('sys_ended_system');
  if (e.reason && e.reason !== 'ended') {
    const k = `sys_ended_${e.reason}`;
    if (t(k)) return t(k);
  }
  if (e.by === 'visitor') return t('sys_ended_visitor');
  if (e.by === 'operator') return t('sys_ended_operator');
  return t('sys_ended_system');
}

function scheduleAck() {
  if (ackTimer) return;
  ackTimer = setTimeout(() => {
    ackTimer = null;
    if (lastSeq > ackedSeq && wsSend({ type: 'ack', id: ulid(), seq: lastSeq })) ackedSeq = lastSeq;
  }, ACK_DELAY_MS);
}

function onAck(msg) {
  if (!msg.id) return;
  if (findOutbox(msg.id)) {
    removeFromOutbox(msg.id);
    const el = ownElement(msg.id);
    if (el) {
      const seq = Number(msg.seq);
      markSent(el, seq || null);
      if (seq) placeBySeq(el, seq);
    }
    saveStore();
  }
  // The ack of `end` has no seq; the `ended` log entry that follows finishes the conversation.
}

function onError(msg) {
  const code = String(msg.code || '');
  if (code === 'not_found') { notFound = true; return; } // close 4004 follows
  if (code === 'unsupported_version') { setFatal(); showError(code, true); return; }
  if (code === 'rate_limited' && isHello(msg.id)) {
    // Too many new conversations from this network: say when, then try again by itself.
    const wait = Math.min(Math.max(Number(msg.retry_after_ms) || 60000, 1000), 600000);
    showError('start_limited', true, { minutes: Math.max(1, Math.ceil(wait / 60000)) });
    retryHelloAfter(wait);
    return;
  }
  const retryMs = Math.min(Math.max(Number(msg.retry_after_ms) || 5000, 500), 60000);
  const item = msg.id ? findOutbox(msg.id) : null;
  if (item) {
    if (code === 'unavailable' || code === 'rate_limited') {
      // Nothing was stored: try again later with the same id.
      item.retry = true;
      scheduleOutboxRetry(code === 'rate_limited' ? retryMs : 2000);
      showError(code, false, { seconds: Math.ceil(retryMs / 1000) });
    } else {
      // text_too_long, invalid, out_of_order...: this message will never be accepted.
      removeFromOutbox(item.id);
      saveStore();
      const el = ownElement(item.id);
      if (el) markFailed(el);
      showError(code === 'text_too_long' || code === 'invalid' || code === 'out_of_order' ? code : 'generic');
    }
    return;
  }
  if (msg.id && msg.id === endId) {
    if (code === 'unavailable' || code === 'rate_limited') {
      setTimeout(() => { if (endId) wsSend({ type: 'end', id: endId }); }, 2000);
    } else {
      endId = null;
      saveStore();
      $('end-button').disabled = false;
      $('end-button').textContent = t('end_button');
      showError('generic');
    }
    return;
  }
  // Errors about pings, typing or acks are not the person's concern; only say what matters.
  if (code === 'rate_limited' || code === 'unavailable') showError(code);
}

/** `gone`: the service lost this conversation (its store was restarted or emptied). */
function onGone(msg) {
  if (conversation && msg.conversation && msg.conversation !== conversation) return;
  conversationLost();
}

function findOutbox(id) {
  for (let i = 0; i < outbox.length; i++) if (outbox[i].id === id) return outbox[i];
  return null;
}

function removeFromOutbox(id) {
  outbox = outbox.filter((x) => x.id !== id);
}

function sendOutboxItem(item) {
  item.retry = false;
  return wsSend({ type: 'send', id: item.id, text: item.text });
}

function scheduleOutboxRetry(ms) {
  clearTimeout(outboxRetryTimer);
  outboxRetryTimer = setTimeout(() => {
    outbox.forEach((item) => { if (item.retry) sendOutboxItem(item); });
  }, ms);
}
