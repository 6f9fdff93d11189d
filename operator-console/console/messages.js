// What is said in a conversation: log entries as they arrive (`event`), the operator's own
// messages from the composer until the log stores them (each conversation's outbox, re-sent with
// the same id after a reconnect), read marks, and typing both ways. The lists and outboxes live on
// each conversation (conversations.js); the one tone timer is here.

import { maxText } from '/console/console/limits.js';
import { t, setText } from '/console/i18n.js';
import { ulid } from '/console/ulid.js';
import { tone } from '/console/sound.js';
import { $, el, fmtClock, toMs, charCount, errorText, toast } from '/console/util.js';
import { isWelcomed, rawSend, sendFrame, track, untrack, tracked } from '/console/console/socket.js';
import { user } from '/console/console/session.js';
import {
  getConv, allConvs, currentConv, isSelected, upsertConv, renderTab, updateTitle,
} from '/console/console/conversations.js';
import {
  renderPane, renderTyping, updateInputCount, isNearBottom, scrollToEnd,
} from '/console/console/pane.js';

const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 5000;

const E = { input: $('#message-input') };

let lastMessageTone = 0;

export function onEvent(m) {
  if (!m.conversation || !Number.isFinite(m.seq) || !m.event) return;
  let conv = getConv(m.conversation);
  if (!conv) {
    // An entry for a conversation we were not told about yet: hold it as active.
    upsertConv({ id: m.conversation, state: 'active' });
    conv = getConv(m.conversation);
    if (!conv) return;
  }
  if (m.seq <= conv.lastSeq) return; // already rendered
  conv.lastSeq = m.seq;
  const ev = m.event;
  const nearBottom = isNearBottom(conv);

  if (ev.kind === 'message') {
    const own = ev.from === 'operator' && ownPending(conv, ev);
    if (own) {
      finalizeOwn(conv, own, m.seq, m.at);
    } else {
      insertRendered(conv, renderMessage(conv, ev, m.seq, m.at));
    }
    if (ev.from === 'visitor') {
      conv.visitorSeqs.push(m.seq);
      conv.remoteTyping = false;
      const now = Date.now();
      if (now - lastMessageTone > 1500) { tone('message'); lastMessageTone = now; }
    }
  } else if (ev.kind === 'retracted') {
    // The person withdrew a message (LINE "unsend"): hide its text, keep a trace that it was there.
    for (const li of conv.list.querySelectorAll('[data-testid="message"][data-from="visitor"]')) {
      if (li.dataset.clientId !== ev.id) continue;
      li.dataset.retracted = 'true';
      li.classList.add('msg-retracted');
      const body = li.querySelector('.msg-body');
      if (body) { body.textContent = ''; body.append(el('span', { i18n: ['msg.retracted'] })); }
    }
  } else {
    insertRendered(conv, renderSystem(ev, m.seq, m.at));
    if (ev.kind === 'ended' && conv.summary.state === 'active') {
      conv.summary.state = 'wrap_up';
      conv.remoteTyping = false;
    }
  }
  renderTab(conv);
  if (isSelected(conv.id)) {
    if (ev.kind !== 'message') renderPane(); else renderTyping();
    if (nearBottom || (ev.kind === 'message' && ev.from === 'operator')) scrollToEnd(conv);
    markRead(conv);
  }
  updateTitle();
}

/** The unconfirmed message of ours that this log entry stores, if any. */
function ownPending(conv, ev) {
  if (ev.id && conv.outbox.has(ev.id)) return conv.outbox.get(ev.id);
  const me = user();
  if (ev.id || !me || ev.operator !== me.name) return null;
  // Defensive: an entry without a client id matches our oldest unconfirmed message with the same text.
  for (const p of conv.outbox.values()) if (!p.failed && p.text === ev.text) return p;
  return null;
}

function renderMessage(conv, ev, seq, at) {
  const from = ev.from === 'visitor' ? 'visitor' : 'operator';
  const li = el('li', { class: `msg msg-${from}`, data: { testid: 'message', from, seq } });
  const me = user();
  let who;
  if (from === 'visitor') who = t('msg.visitor');
  else if (me && ev.operator && ev.operator === me.name) { who = t('msg.you'); li.classList.add('msg-own'); }
  else who = ev.operator || t('msg.you');
  if (from === 'operator') li.dataset.state = 'sent';
  if (ev.id) li.dataset.clientId = ev.id;
  li.append(
    el('div', { class: 'msg-meta small' }, el('span', { class: 'msg-who', text: who }), el('time', { class: 'msg-time', text: fmtClock(toMs(at)) })),
    el('div', { class: 'msg-body', text: typeof ev.text === 'string' ? ev.text : '' }),
  );
  return li;
}

function renderSystem(ev, seq, at) {
  let key;
  let vars;
  if (ev.kind === 'operator_joined') { key = 'sys.joined'; vars = { name: ev.operator || '?' }; }
  else if (ev.kind === 'operator_left') { key = ev.reason === 'requeued' || ev.reason === 'transferred' ? `sys.left.${ev.reason}` : 'sys.left.other'; }
  else if (ev.kind === 'ended') { key = ['visitor', 'operator', 'system'].includes(ev.by) ? `sys.ended.${ev.by}` : 'sys.ended.system'; }
  const li = el('li', { class: `msg msg-system sys-${ev.kind}`, data: { testid: 'message', from: 'system', seq, kind: String(ev.kind || '') } });
  const body = el('span', { class: 'msg-body' });
  if (key) body.append(el('span', { i18n: [key, vars] }));
  else body.append(el('span', { text: String(ev.kind || '') }));
  if (ev.kind === 'ended' && ev.reason && ev.reason !== 'ended') {
    body.append(el('span', { i18n: [`sys.reason.${ev.reason}`] }));
  }
  li.append(body, el('time', { class: 'msg-time small', text: fmtClock(toMs(at)) }));
  return li;
}

/** Insert a rendered log entry after the other rendered ones, before own unconfirmed messages. */
function insertRendered(conv, li) {
  const firstUnconfirmed = conv.list.querySelector('.unconfirmed');
  conv.list.insertBefore(li, firstUnconfirmed);
}

// ---------------------------------------------------------------- sending

export function sendCurrent() {
  const conv = currentConv();
  if (!conv || conv.summary.state === 'wrap_up') return;
  const text = E.input.value.trim();
  if (!text) return;
  if (charCount(text) > maxText()) { updateInputCount(); toast(t('input.tooLong', { max: maxText() }), 'error'); return; }
  const id = ulid();
  const li = el('li', { class: 'msg msg-operator msg-own unconfirmed', data: { testid: 'message', from: 'operator', state: 'pending', clientId: id } });
  li.append(
    el('div', { class: 'msg-meta small' },
      el('span', { class: 'msg-who', i18n: ['msg.you'] }),
      el('span', { class: 'msg-status', data: { role: 'status' }, i18n: ['msg.pending'] })),
    el('div', { class: 'msg-body', text }),
  );
  conv.list.append(li);
  const p = { id, text, li, failed: false, acked: false };
  conv.outbox.set(id, p);
  track(id, { type: 'send', conversation: conv.id });
  rawSendIfWelcomed({ type: 'send', id, conversation: conv.id, text });
  E.input.value = '';
  conv.draft = '';
  stopTyping(conv);
  updateInputCount();
  scrollToEnd(conv);
  E.input.focus();
}

function rawSendIfWelcomed(obj) {
  // If not connected now, the message stays pending and is sent after the next welcome.
  if (isWelcomed()) rawSend(obj);
}

/** After a welcome: re-send what the server has not acknowledged, with the same ids, in order. */
export function resendOutbox() {
  for (const conv of allConvs()) {
    for (const p of conv.outbox.values()) {
      if (p.failed || p.acked) continue;
      if (!tracked(p.id)) track(p.id, { type: 'send', conversation: conv.id });
      rawSend({ type: 'send', id: p.id, conversation: conv.id, text: p.text });
    }
  }
}

export function onSendAck(convId, id, seq) {
  const conv = getConv(convId);
  if (!conv) return;
  const p = conv.outbox.get(id);
  if (!p) return;
  p.acked = true;
  p.li.dataset.state = 'sent';
  if (Number.isFinite(seq)) {
    p.li.dataset.seq = String(seq);
    if (seq <= conv.lastSeq) {
      // The log entry was already seen (e.g. replay after reconnect): it is in place.
      finalizeOwn(conv, p, seq);
      return;
    }
  }
  const status = p.li.querySelector('[data-role="status"]');
  if (status) setText(status, 'msg.sent');
}

/** Our message reached the log: give it its seq and move it into log order. */
function finalizeOwn(conv, p, seq, at) {
  conv.outbox.delete(p.id);
  untrack(p.id);
  const li = p.li;
  li.classList.remove('unconfirmed', 'failed');
  li.dataset.state = 'sent';
  li.dataset.seq = String(seq);
  const status = li.querySelector('[data-role="status"]');
  if (status) status.remove();
  const time = li.querySelector('.msg-time');
  if (!time) li.querySelector('.msg-meta').append(el('time', { class: 'msg-time', text: fmtClock(Number.isFinite(toMs(at)) ? toMs(at) : Date.now()) }));
  li.remove();
  insertRendered(conv, li);
}

export function onSendError(convId, id, code) {
  const conv = getConv(convId);
  if (!conv) { untrack(id); return; }
  const p = conv.outbox.get(id);
  if (!p) { untrack(id); return; }
  if (code === 'unavailable') {
    // Nothing was stored: retry with the same id.
    setTimeout(() => {
      if (conv.outbox.has(id) && !p.failed) rawSendIfWelcomed({ type: 'send', id, conversation: convId, text: p.text });
    }, 2000);
    return;
  }
  untrack(id);
  p.failed = true;
  p.li.dataset.state = 'failed';
  p.li.classList.add('failed');
  const status = p.li.querySelector('[data-role="status"]');
  if (status) setText(status, 'msg.failed');
  if (!p.li.querySelector('.msg-failed-actions')) {
    const back = el('button', { type: 'button', class: 'btn btn-small', i18n: ['msg.toInput'] });
    back.addEventListener('click', () => {
      conv.outbox.delete(id);
      p.li.remove();
      if (isSelected(conv.id)) {
        E.input.value = E.input.value ? `${p.text}\n${E.input.value}` : p.text;
        updateInputCount();
        E.input.focus();
      } else {
        conv.draft = conv.draft ? `${p.text}\n${conv.draft}` : p.text;
      }
    });
    p.li.append(el('div', { class: 'msg-failed-actions' }, el('span', { class: 'small', text: errorText(code) }), back));
  }
}

/** Marks our sent message with client id `id` as not delivered; false if it is not shown. */
export function markUndelivered(id) {
  for (const conv of allConvs()) {
    const li = conv.list && conv.list.querySelector(`li[data-client-id="${id}"]`);
    if (!li) continue;
    li.dataset.state = 'failed';
    li.classList.add('failed');
    if (!li.querySelector('[data-role="undelivered"]')) {
      li.append(el('div', { class: 'msg-failed-actions small', data: { role: 'undelivered' }, i18n: ['msg.notDelivered'] }));
    }
    toast(t('msg.notDelivered'), 'error');
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- read marks

export function markRead(conv) {
  if (!conv || !isSelected(conv.id)) return;
  if (document.visibilityState !== 'visible') return;
  if (conv.lastSeq <= conv.readSeq) return;
  if (!sendFrame({ type: 'ack', id: ulid(), conversation: conv.id, seq: conv.lastSeq })) return;
  conv.readSeq = conv.lastSeq;
  conv.visitorSeqs = conv.visitorSeqs.filter((s) => s > conv.readSeq);
  renderTab(conv);
  updateTitle();
}

// ---------------------------------------------------------------- typing

export function onTyping(m) {
  const conv = getConv(m.conversation);
  if (!conv || m.from === 'operator') return;
  conv.remoteTyping = !!m.active;
  conv.remoteTypingAt = Date.now();
  if (isSelected(conv.id)) renderTyping();
}

export function onLocalInput() {
  const conv = currentConv();
  updateInputCount();
  if (!conv || conv.summary.state !== 'active') return;
  if (!E.input.value.trim()) { stopTyping(conv); return; }
  const now = Date.now();
  if (!conv.typingSent || now - conv.lastTypingSent >= TYPING_REFRESH_MS) {
    if (sendFrame({ type: 'typing', id: ulid(), conversation: conv.id, active: true })) {
      conv.typingSent = true;
      conv.lastTypingSent = now;
    }
  }
  clearTimeout(conv.typingIdle);
  conv.typingIdle = setTimeout(() => stopTyping(conv), TYPING_IDLE_MS);
}

export function stopTyping(conv) {
  if (!conv) return;
  clearTimeout(conv.typingIdle);
  conv.typingIdle = null;
  if (conv.typingSent) {
    conv.typingSent = false;
    sendFrame({ type: 'typing', id: ulid(), conversation: conv.id, active: false });
  }
}

E.input.addEventListener('keydown', (e) => {
  // Enter sends; Shift+Enter is a newline; never send while an IME is composing (Japanese input).
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    sendCurrent();
  }
});
E.input.addEventListener('input', onLocalInput);
E.input.addEventListener('blur', () => { const c = currentConv(); if (c) c.draft = E.input.value; });
$('#composer').addEventListener('submit', (e) => { e.preventDefault(); sendCurrent(); });
