// The message list on screen: building entries (text only, links made from web addresses and
// phone numbers in the counsellor's messages), keeping them in log order, the states of the
// person's own messages, scrolling, and the read-only transcript kept after the end. Owns the
// map from the person's client ids to their elements.

import { $ } from './dom.js';
import { t, catalogue } from './texts.js';

let els = {};   // client id -> message element (own messages)

export function ownElement(id) { return els[id] || null; }
export function rememberOwn(id, el) { els[id] = el; }

const LINK_RE = /(https?:\/\/[^\s<>"'）」】、。]+)|((?:\+81[- ]?|0)\d{1,4}-\d{1,4}-\d{3,4})/g;

/** Appends text with web addresses and phone numbers as links (never innerHTML). */
function appendLinkified(parent, text) {
  let last = 0;
  let m;
  LINK_RE.lastIndex = 0;
  while ((m = LINK_RE.exec(text)) !== null) {
    if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
    const a = document.createElement('a');
    if (m[1]) {
      a.href = m[1];
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
    } else {
      a.href = `tel:${m[2].replace(/[^0-9+]/g, '')}`;
      a.className = 'msg-tel';
    }
    a.textContent = m[0];
    parent.appendChild(a);
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

function timeText(at) {
  try {
    return new Date(at).toLocaleTimeString(catalogue().html_lang || 'ja', { hour: '2-digit', minute: '2-digit' });
  } catch (e) {
    return '';
  }
}

export function createMessage(from, text, at, operatorName) {
  const li = document.createElement('li');
  li.className = `msg msg-${from}`;
  li.setAttribute('data-testid', 'message');
  li.setAttribute('data-from', from);

  const who = document.createElement('span');
  who.className = from === 'operator' ? 'msg-who' : 'visually-hidden';
  who.textContent = from === 'visitor' ? t('from_visitor')
    : from === 'operator' ? (operatorName ? t('from_operator_named', { operator: operatorName }) : t('from_operator'))
      : t('from_system');
  li.appendChild(who);

  const body = document.createElement('p');
  body.className = 'msg-body';
  if (from === 'operator') appendLinkified(body, text); else body.textContent = text;
  li.appendChild(body);

  if (from !== 'system') {
    const meta = document.createElement('span');
    meta.className = 'msg-meta';
    const time = document.createElement('time');
    time.dateTime = new Date(at).toISOString();
    time.textContent = timeText(at);
    meta.appendChild(time);
    if (from === 'visitor') {
      const st = document.createElement('span');
      st.className = 'msg-state';
      meta.appendChild(st);
    }
    li.appendChild(meta);
  }
  return li;
}

function setOwnState(el, state) {
  el.setAttribute('data-state', state);
  const st = el.querySelector('.msg-state');
  if (st) st.textContent = t(`state_${state}`);
}

export function markSent(el, seq) {
  setOwnState(el, 'sent');
  if (seq) el.setAttribute('data-seq', String(seq));
}

export function markFailed(el) {
  setOwnState(el, 'failed');
}

export function addSystem(text, seq, at) {
  const el = createMessage('system', text, at);
  el.setAttribute('data-seq', String(seq));
  placeBySeq(el, seq);
}

/**
 * Inserts (or moves) a log element in seq order. Pending own messages (no seq yet) always stay
 * at the end, after everything the server has ordered.
 */
export function placeBySeq(el, seq) {
  const list = $('messages');
  const stick = nearBottom();
  let before = null;
  const kids = list.children;
  for (let i = 0; i < kids.length; i++) {
    const c = kids[i];
    if (c === el) continue;
    const cs = c.getAttribute('data-seq');
    if (!cs || Number(cs) > seq) { before = c; break; }
  }
  if (before) {
    if (el.nextSibling !== before || el.parentNode !== list) list.insertBefore(el, before);
  } else if (list.lastChild !== el) {
    list.appendChild(el);
  }
  if (stick) scrollToBottom();
}

/** Shows an own message not yet acknowledged (an outbox item). */
export function appendPending(item) {
  const el = createMessage('visitor', item.text, item.at);
  setOwnState(el, 'pending');
  els[item.id] = el;
  $('messages').appendChild(el);
  return el;
}

function nearBottom() {
  const list = $('messages');
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

export function scrollToBottom() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

/** Empties the list; the own messages in `outbox` stay visible as pending. */
export function clearMessages(outbox) {
  $('messages').textContent = '';
  els = {};
  outbox.forEach(appendPending);
}

/**
 * A read-only copy for the person to read again (e.g. a number the counsellor gave), in
 * memory only. Test ids are stripped so the copy is never mistaken for the live list.
 */
export function keepTranscript() {
  const list = $('transcript-list');
  list.textContent = '';
  const kids = $('messages').children;
  for (let i = 0; i < kids.length; i++) {
    const copy = kids[i].cloneNode(true);
    copy.removeAttribute('data-testid');
    list.appendChild(copy);
  }
  $('transcript').hidden = list.children.length === 0;
  $('transcript').open = false;
  $('messages').textContent = '';
  els = {};
}

export function forgetTranscript() {
  $('transcript-list').textContent = '';
  $('transcript').hidden = true;
}

/** A new conversation: an empty list. */
export function resetMessages() {
  $('messages').textContent = '';
  els = {};
}
