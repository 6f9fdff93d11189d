// Tsunagu operator console. Plain ES module, no framework, no build step.
// Protocol: docs/protocol.md ("Operator messages", "Conversation log entries", "HTTP API").
// Nothing about a conversation is written to browser storage: transcripts live in memory only.

import { t, setText, initI18n, onLangChange } from '/console/i18n.js';
import { ulid } from '/console/ulid.js';
import { api, getMe, logout as apiLogout, bindLoginForm, showLoginError } from '/console/auth.js';
import { tone, installAudioUnlock, bindSoundToggle } from '/console/sound.js';
import {
  $, el, byTestId, shortCode, convLabel, fmtDuration, fmtClock, toMs, charCount,
  channelName, langName, categoryName, flagCategoryName, EMERGENCY_CATEGORIES, errorText, toast,
} from '/console/util.js';

// What the gateway accepts, from `welcome.limits` (docs/protocol.md); these defaults only cover
// the moment before the first welcome. `text` is chat text, `note` a transfer note or flag reason,
// both in characters.
const limits = { text: 4000, note: 500 };
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 5000;
const REMOTE_TYPING_EXPIRE_MS = 10000;
const OFFER_REPEAT_TONE_MS = 10000;

// ---------------------------------------------------------------- state

const state = {
  me: null,
  ws: null,
  welcomed: false,
  stopped: true,            // true while logged out or superseded: no reconnect
  everConnected: false,
  attempt: 0,
  failedOpens: 0,
  reconnectTimer: null,
  reconnectAt: 0,
  pingTimer: null,
  lastRx: 0,
  heartbeatMs: 15000,
  categories: [],
  emergencyCategories: [...EMERGENCY_CATEGORIES],
  flagEnabled: false,       // welcome.emergency_categories is empty when flagging is not enabled
  emergencyChecklist: [],   // next steps shown while an emergency is open (from welcome)
  flag: null,               // the open flag dialog: { conversation, clientId, key, busy }
  presence: 'off_duty',
  load: 0,
  capacity: 0,
  queue: { waiting: 0, longest: 0, at: Date.now() },
  offers: new Map(),        // conversation id -> { data, receivedAt, card, expiredAt }
  convs: new Map(),         // conversation id -> conv (see newConv)
  order: [],                // conversation ids in tab order
  selected: null,
  pending: new Map(),       // client message id -> { type, conversation, onAck, onError, context }
  selectNext: false,        // select the next conversation that arrives (take_next)
  selectId: null,           // select this conversation when it arrives (accept)
  lastMessageTone: 0,
  lastOfferTone: 0,
  phrases: null,
  directory: null,
  toolsOpen: null,          // 'phrases' | 'directory' | null
};

// ---------------------------------------------------------------- elements

const E = {
  loginView: $('#login-view'),
  loginForm: $('#login-form'),
  loginNotice: $('#login-notice'),
  appView: $('#app-view'),
  statusBar: $('#status-bar'),
  conn: byTestId('connection-status'),
  connText: $('#conn-text'),
  reconnectHere: $('#reconnect-here'),
  queueWaiting: $('#queue-waiting'),
  queueLongest: $('#queue-longest'),
  presence: $('#presence-select'),
  presenceLoad: $('#presence-load'),
  takeNext: $('#take-next'),
  sound: $('#sound-toggle'),
  meName: $('#me-name'),
  logout: $('#logout'),
  lang: $('#lang-switch'),
  offers: $('#offers'),
  offersEmpty: $('#offers-empty'),
  tabs: $('#conv-tabs'),
  tabsEmpty: $('#tabs-empty'),
  paneEmpty: $('#pane-empty'),
  pane: $('#chat-pane'),
  paneTitle: $('#pane-title'),
  paneChannel: $('#pane-channel'),
  paneLang: $('#pane-lang'),
  paneDuration: $('#pane-duration'),
  paneState: $('#pane-state'),
  paneVisitorGone: $('#pane-visitor-gone'),
  paneHandover: $('#pane-handover'),
  paneHandoverText: $('#pane-handover-text'),
  panePhone: $('#pane-phone'),
  transferButton: $('#transfer-button'),
  helpButton: $('#help-button'),
  endButton: $('#end-button'),
  endBar: $('#end-confirm-bar'),
  endConfirm: $('#end-confirm'),
  endCancel: $('#end-cancel'),
  messagesHost: $('#messages-host'),
  typing: $('#typing-indicator'),
  composer: $('#composer'),
  input: $('#message-input'),
  send: $('#send-button'),
  inputCount: $('#input-count'),
  phrasesButton: $('#phrases-button'),
  directoryButton: $('#directory-button'),
  wrapForm: $('#wrapup-form'),
  wrapCategory: $('#wrapup-category'),
  wrapSubmit: $('#wrapup-submit'),
  tools: $('#tools'),
  phrasesPanel: $('#phrases-panel'),
  phraseFilter: $('#phrase-filter'),
  phrasesStatus: $('#phrases-status'),
  phraseList: $('#phrase-list'),
  directoryPanel: $('#directory-panel'),
  directorySearch: $('#directory-search'),
  directoryStatus: $('#directory-status'),
  directoryList: $('#directory-list'),
  transferDialog: $('#transfer-dialog'),
  transferForm: $('#transfer-form'),
  transferFor: $('#transfer-for'),
  transferTarget: $('#transfer-target'),
  transferStatus: $('#transfer-status'),
  transferNote: $('#transfer-note'),
  transferCount: $('#transfer-count'),
  transferError: $('#transfer-error'),
  transferCancel: $('#transfer-cancel'),
  transferSubmit: $('#transfer-submit'),
  flagButton: $('#flag-button'),
  emergencyBanner: $('#emergency-banner'),
  emergencyCategories: $('#emergency-categories'),
  emergencyRaised: $('#emergency-raised'),
  emergencyAcked: $('#emergency-acked'),
  emergencyChecklist: $('#emergency-checklist'),
  emergencyChecklistEmpty: $('#emergency-checklist-empty'),
  flagDialog: $('#flag-dialog'),
  flagForm: $('#flag-form'),
  flagHeading: $('#flag-heading'),
  flagFor: $('#flag-for'),
  flagStepEdit: $('#flag-step-edit'),
  flagStepConfirm: $('#flag-step-confirm'),
  flagCategory: $('#flag-category'),
  flagReason: $('#flag-reason'),
  flagCount: $('#flag-count'),
  flagSummaryCategory: $('#flag-summary-category'),
  flagSummaryReason: $('#flag-summary-reason'),
  flagError: $('#flag-error'),
  flagCancel: $('#flag-cancel'),
  flagBack: $('#flag-back'),
  flagSubmit: $('#flag-submit'),
  flagConfirm: $('#flag-confirm'),
  pauseOffer: $('#pause-offer'),
  pauseAccept: $('#pause-accept'),
  pauseDecline: $('#pause-decline'),
};

// ---------------------------------------------------------------- boot

initI18n(E.lang);
installAudioUnlock();
const renderSound = bindSoundToggle(E.sound, t);
onLangChange(() => {
  renderSound();
  document.title = `${t('app.name')} ${t('app.subtitle')}`;
  rerenderAll();
});
bindLoginForm(E.loginForm, (me) => startSession(me));
wireUi();
setInterval(tick, 1000);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') markRead(currentConv());
});
window.addEventListener('online', () => {
  if (!state.stopped && !state.ws) connectNow();
});
boot();

async function boot() {
  document.title = `${t('app.name')} ${t('app.subtitle')}`;
  const r = await getMe();
  if (r.ok && r.data) startSession(r.data);
  else showLogin(r.network ? 'login.network' : null);
}

function showLogin(noticeKey) {
  E.appView.hidden = true;
  E.statusBar.hidden = true;
  E.loginView.hidden = false;
  if (noticeKey) { setText(E.loginNotice, noticeKey); E.loginNotice.hidden = false; }
  else E.loginNotice.hidden = true;
  showLoginError(E.loginForm, null);
  const user = byTestId('login-username', E.loginForm);
  (user.value ? byTestId('login-password', E.loginForm) : user).focus();
}

function startSession(me) {
  state.me = me;
  state.stopped = false;
  state.attempt = 0;
  state.failedOpens = 0;
  E.loginView.hidden = true;
  E.appView.hidden = false;
  E.statusBar.hidden = false;
  E.meName.textContent = t('signedInAs', { name: me.name || '' });
  connectNow();
}

/** Back to the login form, dropping everything held in memory. */
function toLogin(noticeKey) {
  state.stopped = true;
  clearTimeout(state.reconnectTimer);
  stopPing();
  if (state.ws) {
    const ws = state.ws;
    state.ws = null;
    try { ws.close(1000, 'logout'); } catch (_) { /* ignore */ }
  }
  state.welcomed = false;
  state.everConnected = false;
  closePause();
  resetConversationState();
  setConn('offline');
  showLogin(noticeKey);
}

function resetConversationState() {
  for (const id of [...state.convs.keys()]) dropConv(id);
  for (const id of [...state.offers.keys()]) removeOffer(id);
  state.pending.clear();
  state.selected = null;
  state.selectNext = false;
  state.selectId = null;
  state.order = [];
  renderPane();
  updateTitle();
}

// ---------------------------------------------------------------- websocket

function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws/operator`;
}

function connectNow() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  if (state.stopped) return;
  if (state.ws) return;
  state.welcomed = false;
  setConn(state.everConnected ? 'reconnecting' : 'connecting');
  E.reconnectHere.hidden = true;
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (e) {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  let opened = false;
  ws.addEventListener('open', () => {
    if (state.ws !== ws) return;
    opened = true;
    state.lastRx = Date.now();
    const lastSeqs = {};
    for (const conv of state.convs.values()) lastSeqs[conv.id] = conv.lastSeq;
    rawSend({ type: 'hello', v: 1, id: ulid(), last_seqs: lastSeqs });
  });
  ws.addEventListener('message', (e) => {
    if (state.ws !== ws) return;
    state.lastRx = Date.now();
    if (typeof e.data !== 'string') return;
    let msg;
    try { msg = JSON.parse(e.data); } catch (_) { return; }
    if (!msg || typeof msg !== 'object') return;
    try { dispatch(msg); } catch (err) { console.error('console: failed to handle', msg && msg.type, err); }
  });
  ws.addEventListener('close', (e) => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.welcomed = false;
    stopPing();
    setControlsEnabled(false);
    onClosed(e.code, opened);
  });
  ws.addEventListener('error', () => { /* close follows */ });
}

async function onClosed(code, opened) {
  if (state.stopped) return;
  if (code === 4001 || code === 4010) { toLogin('login.expired'); return; }
  if (code === 4009) {
    state.stopped = true;
    setConn('offline', 'conn.superseded');
    E.reconnectHere.hidden = false;
    toast(t('conn.superseded'), 'error', { timeout: 0 });
    return;
  }
  if (code === 4002) {
    state.stopped = true;
    setConn('offline', 'conn.version');
    return;
  }
  if (!opened) {
    // The upgrade itself failed: maybe the session is gone (401 before the websocket exists).
    state.failedOpens += 1;
    if (state.failedOpens >= 2) {
      const r = await getMe();
      if (state.stopped) return;
      if (r.status === 401) { toLogin('login.expired'); return; }
    }
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  if (state.stopped) return;
  const base = Math.min(10000, 500 * 2 ** state.attempt);
  const delay = Math.max(500, Math.round(base / 2 + Math.random() * (base / 2)));
  state.attempt += 1;
  state.reconnectAt = Date.now() + delay;
  setConn('reconnecting', 'conn.reconnectingIn', { s: Math.ceil(delay / 1000) });
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(connectNow, delay);
}

function rawSend(obj) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  try { ws.send(JSON.stringify(obj)); return true; } catch (_) { return false; }
}

/** Send a frame once the session is welcomed. Returns false if not connected. */
function sendFrame(obj) {
  if (!state.welcomed) return false;
  return rawSend(obj);
}

/**
 * Send a client command with a fresh ULID; handlers get the matching ack / error.
 * If not connected, onError({code:'not_connected'}) is called at once. onInterrupt() is called
 * if the socket was replaced before an answer came (the outcome is then unknown).
 */
function command(type, fields = {}, handlers = {}) {
  // handlers.id: a client id to reuse, so that a retry is applied once (see `flag`).
  const id = handlers.id || ulid();
  const entry = { type, conversation: fields.conversation, ...handlers };
  state.pending.set(id, entry);
  if (!sendFrame({ type, id, ...fields })) {
    state.pending.delete(id);
    if (entry.onError) entry.onError({ code: 'not_connected' });
    else toast(t('error.notConnected'), 'error');
    return null;
  }
  return id;
}

function startPing() {
  stopPing();
  state.pingTimer = setInterval(() => {
    if (!state.ws) return;
    if (Date.now() - state.lastRx > 3 * state.heartbeatMs) {
      // The server went silent: drop the socket and reconnect.
      const ws = state.ws;
      state.ws = null;
      state.welcomed = false;
      try { ws.close(4000, 'heartbeat'); } catch (_) { /* ignore */ }
      stopPing();
      setControlsEnabled(false);
      scheduleReconnect();
      return;
    }
    rawSend({ type: 'ping', id: ulid() });
  }, state.heartbeatMs);
}

function stopPing() {
  clearInterval(state.pingTimer);
  state.pingTimer = null;
}

function setConn(st, key, vars) {
  E.conn.dataset.state = st === 'connecting' ? 'reconnecting' : st;
  const k = key || `conn.${st}`;
  setText(E.connText, k, vars);
}

// ---------------------------------------------------------------- dispatch

function dispatch(msg) {
  switch (msg.type) {
    case 'welcome': onWelcome(msg); break;
    case 'presence': onPresence(msg); break;
    case 'queue': onQueue(msg); break;
    case 'offer': addOffer(msg, true); break;
    case 'offer_withdrawn': onOfferWithdrawn(msg); break;
    case 'conversation': if (msg.conversation) upsertConv(msg.conversation); break;
    case 'event': onEvent(msg); break;
    case 'typing': onTyping(msg); break;
    case 'removed': onRemoved(msg); break;
    case 'gone': onGone(msg); break;
    case 'ack': onAck(msg); break;
    case 'error': onError(msg); break;
    case 'pong': break;
    default: break; // unknown types are ignored (forward compatible)
  }
}

/** Takes the text limits from `welcome.limits`; a missing or odd value keeps the one before. */
function readLimits(l) {
  if (!l || typeof l !== 'object') return;
  if (Number.isInteger(l.max_text) && l.max_text > 0) limits.text = l.max_text;
  if (Number.isInteger(l.max_note) && l.max_note > 0) limits.note = l.max_note;
  E.transferNote.maxLength = limits.note;
  E.flagReason.maxLength = limits.note;
}

function onWelcome(m) {
  state.welcomed = true;
  state.everConnected = true;
  state.attempt = 0;
  state.failedOpens = 0;
  setConn('connected');
  if (m.operator) {
    state.me = { ...state.me, ...m.operator };
    E.meName.textContent = t('signedInAs', { name: state.me.name || '' });
  }
  if (Number.isFinite(m.heartbeat_ms) && m.heartbeat_ms >= 1000) state.heartbeatMs = m.heartbeat_ms;
  readLimits(m.limits);
  if (Array.isArray(m.categories)) { state.categories = m.categories.map(String); renderCategories(); }
  const emCats = Array.isArray(m.emergency_categories) ? m.emergency_categories.map(itemText).filter(Boolean) : [];
  state.flagEnabled = emCats.length > 0;
  if (state.flagEnabled) { state.emergencyCategories = emCats; renderFlagCategories(); }
  if (Array.isArray(m.emergency_checklist)) state.emergencyChecklist = m.emergency_checklist.map(itemText).filter(Boolean);
  onPresence({ state: m.presence || state.presence, load: state.load, capacity: m.capacity ?? state.capacity });

  // Commands other than chat sends that were in flight are forgotten.
  for (const [id, p] of state.pending) {
    if (p.type === 'send') continue;
    state.pending.delete(id);
    if (p.onInterrupt) { try { p.onInterrupt(); } catch (err) { console.error(err); } }
  }

  const summaries = Array.isArray(m.conversations) ? m.conversations : [];
  const live = new Set(summaries.filter((s) => s && s.state !== 'offered').map((s) => s.id));
  for (const id of [...state.convs.keys()]) {
    if (!live.has(id)) {
      toast(t('removed.gone', { label: convLabel(id) }), 'info');
      dropConv(id);
    }
  }
  for (const s of summaries) upsertConv(s);
  // Until the next `presence` event, the load is what we hold.
  state.load = [...state.convs.values()].filter((c) => c.summary.state === 'active' || c.summary.state === 'wrap_up').length;
  renderPresence();

  for (const id of [...state.offers.keys()]) removeOffer(id);
  for (const o of Array.isArray(m.offers) ? m.offers : []) addOffer(o, true);

  // Re-send what the server has not acknowledged, with the same ids, in order.
  for (const conv of state.convs.values()) {
    for (const p of conv.outbox.values()) {
      if (p.failed || p.acked) continue;
      if (!state.pending.has(p.id)) state.pending.set(p.id, { type: 'send', conversation: conv.id });
      rawSend({ type: 'send', id: p.id, conversation: conv.id, text: p.text });
    }
  }
  startPing();
  setControlsEnabled(true);
  renderTabs();
  renderPane();
  markRead(currentConv());
}

function onPresence(m) {
  if (m.state) state.presence = m.state;
  if (Number.isFinite(m.load)) state.load = m.load;
  if (Number.isFinite(m.capacity)) state.capacity = m.capacity;
  renderPresence();
}

function renderPresence() {
  if (document.activeElement !== E.presence) E.presence.value = state.presence;
  setText(E.presenceLoad, 'presence.load', { load: state.load, capacity: state.capacity });
  E.presenceLoad.classList.toggle('full', state.capacity > 0 && state.load >= state.capacity);
}

function onQueue(m) {
  state.queue = {
    waiting: Number.isFinite(m.waiting) ? m.waiting : 0,
    longest: Number.isFinite(m.longest_wait_ms) ? m.longest_wait_ms : 0,
    at: Date.now(),
  };
  renderQueue();
}

function renderQueue() {
  const q = state.queue;
  E.queueWaiting.textContent = String(q.waiting);
  E.queueWaiting.parentElement.classList.toggle('hot', q.waiting > 0);
  E.queueLongest.textContent = q.waiting > 0 ? fmtDuration(q.longest + (Date.now() - q.at)) : t('queue.none');
}

function setControlsEnabled(on) {
  E.presence.disabled = !on;
  E.takeNext.disabled = !on;
}

// ---------------------------------------------------------------- acks and errors

function onAck(m) {
  const p = state.pending.get(m.id);
  if (!p) return;
  state.pending.delete(m.id);
  if (p.type === 'send') { onSendAck(p.conversation, m.id, m.seq); return; }
  if (p.onAck) p.onAck(m);
}

function onError(m) {
  const p = m.id ? state.pending.get(m.id) : null;
  if (p && p.type === 'send') { onSendError(p.conversation, m.id, m.code); return; }
  if (p) {
    state.pending.delete(m.id);
    if (p.onError) { p.onError(m); return; }
    toast(errorText(m.code, p.type), 'error');
    return;
  }
  // A message already stored (acknowledged) that a connector could not deliver, e.g. LINE refused it.
  if (m.id && m.code === 'unavailable' && markUndelivered(m.id)) return;
  if (m.code === 'unsupported_version') { setConn('offline', 'conn.version'); }
  toast(errorText(m.code), 'error');
}

/** Marks our sent message with client id `id` as not delivered; false if it is not shown. */
function markUndelivered(id) {
  for (const conv of state.convs.values()) {
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

// ---------------------------------------------------------------- offers

function addOffer(o, withTone) {
  if (!o || !o.conversation) return;
  const existing = state.offers.get(o.conversation);
  if (existing) existing.card.remove();
  const entry = { data: o, receivedAt: Date.now(), card: null, busy: false };
  entry.card = renderOfferCard(entry);
  state.offers.set(o.conversation, entry);
  E.offers.prepend(entry.card);
  E.offersEmpty.hidden = true;
  if (withTone && !existing) { tone('offer'); state.lastOfferTone = Date.now(); }
  updateTitle();
}

function renderOfferCard(entry) {
  const o = entry.data;
  const isTransfer = !!(o.transfer && typeof o.transfer === 'object');
  const card = el('article', {
    class: `offer-card${isTransfer ? ' offer-transfer' : ''}`,
    data: { testid: 'offer', conversation: o.conversation },
    'aria-label': isTransfer ? t('offer.transferTitle') : t('offer.title'),
  });
  card.append(el('h3', { class: 'offer-title', i18n: [isTransfer ? 'offer.transferTitle' : 'offer.title'] }));
  card.append(el('p', { class: 'offer-who', text: convLabel(o.conversation) }));
  card.append(el('p', { class: 'offer-meta' },
    el('span', { class: 'chip', text: channelName(o.channel) }),
    el('span', { class: 'chip', text: langName(o.language) })));
  card.append(el('p', { class: 'offer-waited', data: { role: 'waited' } }));
  if (isTransfer) {
    card.append(el('p', { class: 'offer-from', i18n: ['offer.from', { name: o.transfer.from || '?' }] }));
    if (o.transfer.note) {
      card.append(el('div', { class: 'offer-note' },
        el('strong', { i18n: ['offer.note'] }),
        el('p', { text: o.transfer.note })));
    }
  }
  const countdown = el('p', { class: 'offer-countdown', data: { role: 'countdown' }, 'aria-live': 'off' });
  card.append(countdown);
  const accept = el('button', { type: 'button', class: 'btn btn-primary btn-big', data: { testid: 'offer-accept' }, i18n: ['offer.accept'] });
  const decline = el('button', { type: 'button', class: 'btn', data: { testid: 'offer-decline' }, i18n: ['offer.decline'] });
  accept.addEventListener('click', () => acceptOffer(o.conversation));
  decline.addEventListener('click', () => declineOffer(o.conversation));
  card.append(el('div', { class: 'offer-actions' }, accept, decline));
  entry.card = card;
  updateOfferTimes(entry);
  return card;
}

function updateOfferTimes(entry) {
  const o = entry.data;
  const elapsed = Date.now() - entry.receivedAt;
  const waited = entry.card.querySelector('[data-role="waited"]');
  if (waited) setText(waited, 'offer.waited', { time: fmtDuration((o.waited_ms || 0) + elapsed) });
  const cd = entry.card.querySelector('[data-role="countdown"]');
  if (!cd) return;
  if (Number.isFinite(o.expires_in_ms)) {
    const left = o.expires_in_ms - elapsed;
    if (left > 0) {
      setText(cd, 'offer.expires', { s: Math.ceil(left / 1000) });
      cd.classList.toggle('urgent', left < 10000);
    } else {
      setText(cd, 'offer.expired');
      entry.card.classList.add('expired');
      for (const b of entry.card.querySelectorAll('button')) b.disabled = true;
      // The server withdraws it; if that message is lost, drop it ourselves.
      if (left < -5000) removeOffer(o.conversation);
    }
  }
}

function acceptOffer(id) {
  const entry = state.offers.get(id);
  if (!entry || entry.busy) return;
  entry.busy = true;
  for (const b of entry.card.querySelectorAll('button')) b.disabled = true;
  state.selectId = id;
  command('accept', { conversation: id }, {
    onAck: () => {
      removeOffer(id);
      const conv = state.convs.get(id);
      if (conv) selectConv(id);
    },
    onError: (e) => {
      state.selectId = null;
      toast(errorText(e.code, 'accept'), 'error');
      if (e.code === 'not_found' || e.code === 'out_of_order') { removeOffer(id); return; }
      const still = state.offers.get(id);
      if (still) { still.busy = false; for (const b of still.card.querySelectorAll('button')) b.disabled = false; updateOfferTimes(still); }
    },
  });
}

function declineOffer(id) {
  const entry = state.offers.get(id);
  if (!entry || entry.busy) return;
  entry.busy = true;
  command('decline', { conversation: id }, {
    onAck: () => removeOffer(id),
    onError: (e) => {
      if (e.code !== 'not_found' && e.code !== 'out_of_order') toast(errorText(e.code), 'error');
      removeOffer(id);
    },
  });
  removeOffer(id);
}

function onOfferWithdrawn(m) {
  const had = state.offers.has(m.conversation);
  removeOffer(m.conversation);
  if (had && m.reason && m.reason !== 'declined' && state.selectId !== m.conversation) {
    const key = `offer.withdrawn.${m.reason}`;
    if (m.reason === 'timeout' || m.reason === 'abandoned' || m.reason === 'taken') toast(t(key), 'info');
  }
}

function removeOffer(id) {
  const entry = state.offers.get(id);
  if (!entry) return;
  entry.card.remove();
  state.offers.delete(id);
  E.offersEmpty.hidden = state.offers.size > 0;
  updateTitle();
}

function takeNext() {
  state.selectNext = true;
  E.takeNext.disabled = true;
  command('take_next', {}, {
    onAck: () => { E.takeNext.disabled = !state.welcomed; },
    onError: (e) => {
      state.selectNext = false;
      E.takeNext.disabled = !state.welcomed;
      toast(errorText(e.code, 'take_next'), e.code === 'not_found' ? 'info' : 'error');
    },
  });
  setTimeout(() => { E.takeNext.disabled = !state.welcomed; }, 1500);
}

// ---------------------------------------------------------------- conversations

function newConv(id) {
  const list = el('ol', { class: 'messages', data: { testid: 'messages', conversation: id }, 'aria-live': 'polite', 'aria-relevant': 'additions' });
  return {
    id,
    summary: { id, state: 'active' },
    lastSeq: 0,          // highest seq rendered
    readSeq: 0,          // highest seq acknowledged (read) by us
    visitorSeqs: [],     // seqs of visitor messages not yet read
    list,
    outbox: new Map(),   // client id -> { id, text, li, failed, acked }
    draft: '',
    tab: null,
    remoteTyping: false,
    remoteTypingAt: 0,
    typingSent: false,
    lastTypingSent: 0,
    typingIdle: null,
    endConfirm: false,
  };
}

function upsertConv(s) {
  if (!s || !s.id) return;
  let conv = state.convs.get(s.id);
  let isNew = false;
  if (!conv) {
    if (s.state === 'offered') return; // shown as an offer card, not a tab
    conv = newConv(s.id);
    state.convs.set(s.id, conv);
    state.order.push(s.id);
    isNew = true;
  }
  const prevState = conv.summary.state;
  const wasOpen = emergencyOpen(conv);
  conv.summary = { ...conv.summary, ...s };
  if (conv.summary.emergency) conv.everFlagged = true;
  if (!isNew && wasOpen !== emergencyOpen(conv)) onEmergencyChange(conv);
  if (s.state !== 'offered') removeOffer(s.id);
  if (prevState !== conv.summary.state && conv.summary.state !== 'wrap_up') conv.endConfirm = false;
  renderTab(conv);
  if (isNew && (state.selectNext || state.selectId === s.id || !state.selected)) {
    state.selectNext = false;
    if (state.selectId === s.id) state.selectId = null;
    selectConv(s.id);
  } else if (state.selected === s.id) {
    renderPane();
  }
  E.tabsEmpty.hidden = state.convs.size > 0;
}

function onRemoved(m) {
  const conv = state.convs.get(m.conversation);
  removeOffer(m.conversation);
  // After a flagged conversation closes the server suggests a pause (it may come after our own
  // wrap-up already dropped the conversation).
  if (m.suggest_pause === true) offerPause();
  if (!conv) return;
  const reason = ['closed', 'transferred', 'requeued'].includes(m.reason) ? m.reason : 'closed';
  if (!conv.closingLocally) toast(t(`removed.${reason}`, { label: convLabel(conv.id) }), 'info');
  dropConv(conv.id);
}

/**
 * `gone`: the service lost this conversation (its store was restarted or emptied) without it
 * ending. Nothing more can be sent or received in it; the person has been told and offered a new
 * start. The notice stays until dismissed (an alert, not a passing status), so a counsellor who
 * was mid-reply understands why the conversation vanished.
 */
function onGone(m) {
  const id = m.conversation;
  if (!id) return;
  const offered = state.offers.has(id);
  removeOffer(id);
  const conv = state.convs.get(id);
  if (!conv && !offered) return;
  toast(t('removed.lost', { label: convLabel(id) }), 'error', { timeout: 0 });
  if (conv) dropConv(id);
}

function dropConv(id) {
  const conv = state.convs.get(id);
  if (!conv) return;
  clearTimeout(conv.typingIdle);
  for (const p of conv.outbox.values()) state.pending.delete(p.id);
  if (state.flag && state.flag.conversation === id) closeFlag(true);
  conv.list.remove();
  if (conv.tab) conv.tab.remove();
  state.convs.delete(id);
  state.order = state.order.filter((x) => x !== id);
  if (state.selected === id) {
    state.selected = null;
    const next = state.order[0];
    if (next) selectConv(next);
    else renderPane();
  }
  E.tabsEmpty.hidden = state.convs.size > 0;
  updateTitle();
}

function currentConv() { return state.selected ? state.convs.get(state.selected) || null : null; }

function selectConv(id) {
  const prev = currentConv();
  if (prev && prev.id !== id) {
    prev.draft = E.input.value;
    stopTyping(prev);
  }
  if (!state.convs.has(id)) return;
  const changed = state.selected !== id;
  state.selected = id;
  const conv = currentConv();
  if (changed) {
    E.input.value = conv.draft;
    E.messagesHost.replaceChildren(conv.list);
  }
  renderTabs();
  renderPane();
  if (changed) {
    scrollToEnd(conv, true);
    if (state.toolsOpen === 'phrases') renderPhrases(); // phrases in the conversation's language first
  }
  markRead(conv);
}

function renderTabs() {
  for (const id of state.order) {
    const conv = state.convs.get(id);
    if (conv) renderTab(conv);
  }
  E.tabsEmpty.hidden = state.convs.size > 0;
}

function unreadCount(conv) {
  return conv.visitorSeqs.filter((s) => s > conv.readSeq).length;
}

function renderTab(conv) {
  if (!conv.tab) {
    const tab = el('button', {
      type: 'button', role: 'tab', class: 'conv-tab', id: `tab-${conv.id}`,
      'aria-controls': 'chat-pane', data: { testid: 'conversation-tab', conversation: conv.id, unread: 0 },
    });
    tab.append(
      el('span', { class: 'tab-label' },
        el('span', { data: { role: 'label' } }),
        el('span', { class: 'tab-emergency', data: { role: 'emergency' }, i18n: ['emergency.tab'], hidden: true })),
      el('span', { class: 'tab-unread', data: { role: 'unread' }, hidden: true }),
      el('span', { class: 'tab-meta small', data: { role: 'meta' } }),
      el('span', { class: 'tab-timer small timer', data: { role: 'timer' } }),
    );
    tab.addEventListener('click', () => selectConv(conv.id));
    tab.addEventListener('keydown', onTabKey);
    conv.tab = tab;
    E.tabs.append(tab);
  }
  const s = conv.summary;
  const tab = conv.tab;
  const unread = unreadCount(conv);
  const selected = state.selected === conv.id;
  tab.dataset.unread = String(unread);
  tab.dataset.state = s.state || 'active';
  tab.setAttribute('aria-selected', selected ? 'true' : 'false');
  tab.tabIndex = selected || (!state.selected && state.order[0] === conv.id) ? 0 : -1;
  tab.classList.toggle('has-unread', unread > 0);
  const emergency = emergencyOpen(conv);
  if (emergency) tab.dataset.emergency = 'true'; else delete tab.dataset.emergency;
  tab.querySelector('[data-role="emergency"]').hidden = !emergency;
  tab.querySelector('[data-role="label"]').textContent = convLabel(conv.id);
  const badge = tab.querySelector('[data-role="unread"]');
  badge.hidden = unread === 0;
  badge.textContent = String(unread);
  badge.setAttribute('aria-label', t('conv.unread', { n: unread }));
  const meta = [channelName(s.channel), langName(s.language)];
  if (s.state && s.state !== 'active') meta.push(t(`conv.state.${s.state}`));
  tab.querySelector('[data-role="meta"]').textContent = meta.join(' · ');
  updateTabTimer(conv);
}

function updateTabTimer(conv) {
  if (!conv.tab) return;
  const started = toMs(conv.summary.started_at);
  conv.tab.querySelector('[data-role="timer"]').textContent = Number.isFinite(started) ? fmtDuration(Date.now() - started) : '';
}

function onTabKey(e) {
  const tabs = Array.from(E.tabs.querySelectorAll('[role="tab"]'));
  const i = tabs.indexOf(e.currentTarget);
  let j = -1;
  if (e.key === 'ArrowDown' || e.key === 'ArrowRight') j = (i + 1) % tabs.length;
  else if (e.key === 'ArrowUp' || e.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
  else if (e.key === 'Home') j = 0;
  else if (e.key === 'End') j = tabs.length - 1;
  if (j < 0) return;
  e.preventDefault();
  tabs[j].focus();
  selectConv(tabs[j].dataset.conversation);
}

function renderPane() {
  const conv = currentConv();
  E.paneEmpty.hidden = !!conv;
  E.pane.hidden = !conv;
  if (!conv) {
    E.pane.dataset.conversation = '';
    E.messagesHost.replaceChildren();
    closeTools();
    renderEmergency(null);
    return;
  }
  const s = conv.summary;
  E.pane.dataset.conversation = conv.id;
  E.pane.setAttribute('aria-labelledby', 'pane-title');
  E.paneTitle.textContent = convLabel(conv.id);
  E.paneChannel.textContent = channelName(s.channel);
  E.paneLang.textContent = langName(s.language);
  E.paneState.textContent = t(`conv.state.${s.state || 'active'}`);
  E.paneState.dataset.state = s.state || 'active';
  updatePaneTimer();
  E.paneVisitorGone.hidden = s.visitor_connected !== false || s.state !== 'active';
  const note = s.handover_note || conv.transferNote || '';
  E.paneHandover.hidden = !note;
  E.paneHandoverText.textContent = note;
  E.panePhone.hidden = s.channel !== 'phone';
  renderEmergency(conv);

  const wrap = s.state === 'wrap_up';
  // A call is talked on the phone: no chat input, only the notice (the timer is in the header).
  E.composer.hidden = wrap || s.channel === 'phone';
  E.wrapForm.hidden = !wrap;
  E.transferButton.disabled = wrap;
  E.endButton.disabled = wrap;
  E.endBar.hidden = wrap || !conv.endConfirm;
  if (wrap) {
    closeTools();
    if (!E.wrapCategory.value && conv.wrapChoice) E.wrapCategory.value = conv.wrapChoice;
  }
  renderTyping();
  renderHelpButton();
  updateInputCount();
}

function updatePaneTimer() {
  const conv = currentConv();
  if (!conv) return;
  const started = toMs(conv.summary.started_at);
  E.paneDuration.textContent = Number.isFinite(started) ? t('pane.duration', { time: fmtDuration(Date.now() - started) }) : '';
}

function rerenderAll() {
  renderTabs();
  renderPane();
  renderQueue();
  renderPresence();
  renderCategories();
  renderFlagCategories();
  if (state.flag) updateFlagCount();
  if (state.me) E.meName.textContent = t('signedInAs', { name: state.me.name || '' });
  for (const entry of state.offers.values()) updateOfferTimes(entry);
  if (state.phrases) renderPhrases();
  if (state.directory) renderDirectory();
}

// ---------------------------------------------------------------- log entries

function onEvent(m) {
  if (!m.conversation || !Number.isFinite(m.seq) || !m.event) return;
  let conv = state.convs.get(m.conversation);
  if (!conv) {
    // An entry for a conversation we were not told about yet: hold it as active.
    upsertConv({ id: m.conversation, state: 'active' });
    conv = state.convs.get(m.conversation);
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
      if (now - state.lastMessageTone > 1500) { tone('message'); state.lastMessageTone = now; }
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
  if (state.selected === conv.id) {
    if (ev.kind !== 'message') renderPane(); else renderTyping();
    if (nearBottom || (ev.kind === 'message' && ev.from === 'operator')) scrollToEnd(conv);
    markRead(conv);
  }
  updateTitle();
}

/** The unconfirmed message of ours that this log entry stores, if any. */
function ownPending(conv, ev) {
  if (ev.id && conv.outbox.has(ev.id)) return conv.outbox.get(ev.id);
  if (ev.id || !state.me || ev.operator !== state.me.name) return null;
  // Defensive: an entry without a client id matches our oldest unconfirmed message with the same text.
  for (const p of conv.outbox.values()) if (!p.failed && p.text === ev.text) return p;
  return null;
}

function renderMessage(conv, ev, seq, at) {
  const from = ev.from === 'visitor' ? 'visitor' : 'operator';
  const li = el('li', { class: `msg msg-${from}`, data: { testid: 'message', from, seq } });
  let who;
  if (from === 'visitor') who = t('msg.visitor');
  else if (state.me && ev.operator && ev.operator === state.me.name) { who = t('msg.you'); li.classList.add('msg-own'); }
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

function sendCurrent() {
  const conv = currentConv();
  if (!conv || conv.summary.state === 'wrap_up') return;
  const text = E.input.value.trim();
  if (!text) return;
  if (charCount(text) > limits.text) { updateInputCount(); toast(t('input.tooLong', { max: limits.text }), 'error'); return; }
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
  state.pending.set(id, { type: 'send', conversation: conv.id });
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
  if (state.welcomed) rawSend(obj);
}

function onSendAck(convId, id, seq) {
  const conv = state.convs.get(convId);
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
  state.pending.delete(p.id);
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

function onSendError(convId, id, code) {
  const conv = state.convs.get(convId);
  if (!conv) { state.pending.delete(id); return; }
  const p = conv.outbox.get(id);
  if (!p) { state.pending.delete(id); return; }
  if (code === 'unavailable') {
    // Nothing was stored: retry with the same id.
    setTimeout(() => {
      if (conv.outbox.has(id) && !p.failed) rawSendIfWelcomed({ type: 'send', id, conversation: convId, text: p.text });
    }, 2000);
    return;
  }
  state.pending.delete(id);
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
      if (state.selected === conv.id) {
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

// ---------------------------------------------------------------- read marks

function markRead(conv) {
  if (!conv || state.selected !== conv.id) return;
  if (document.visibilityState !== 'visible') return;
  if (conv.lastSeq <= conv.readSeq) return;
  if (!sendFrame({ type: 'ack', id: ulid(), conversation: conv.id, seq: conv.lastSeq })) return;
  conv.readSeq = conv.lastSeq;
  conv.visitorSeqs = conv.visitorSeqs.filter((s) => s > conv.readSeq);
  renderTab(conv);
  updateTitle();
}

function updateTitle() {
  let unread = 0;
  for (const c of state.convs.values()) unread += unreadCount(c);
  const n = unread + state.offers.size;
  const base = `${t('app.name')} ${t('app.subtitle')}`;
  document.title = n > 0 ? `(${n}) ${base}` : base;
}

// ---------------------------------------------------------------- typing

function onTyping(m) {
  const conv = state.convs.get(m.conversation);
  if (!conv || m.from === 'operator') return;
  conv.remoteTyping = !!m.active;
  conv.remoteTypingAt = Date.now();
  if (state.selected === conv.id) renderTyping();
}

function renderTyping() {
  const conv = currentConv();
  const on = !!conv && conv.remoteTyping && Date.now() - conv.remoteTypingAt < REMOTE_TYPING_EXPIRE_MS && conv.summary.state === 'active';
  E.typing.hidden = !on;
}

function onLocalInput() {
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

function stopTyping(conv) {
  if (!conv) return;
  clearTimeout(conv.typingIdle);
  conv.typingIdle = null;
  if (conv.typingSent) {
    conv.typingSent = false;
    sendFrame({ type: 'typing', id: ulid(), conversation: conv.id, active: false });
  }
}

function updateInputCount() {
  const n = charCount(E.input.value.trim());
  E.inputCount.textContent = n > 0 ? t('input.count', { n, max: limits.text }) : '';
  const over = n > limits.text;
  E.inputCount.classList.toggle('over', over);
  E.input.setAttribute('aria-invalid', over ? 'true' : 'false');
  if (over) E.inputCount.textContent += ` ${t('input.tooLong', { max: limits.text })}`;
}

// ---------------------------------------------------------------- scrolling

function isNearBottom(conv) {
  if (state.selected !== conv.id) return true;
  const host = E.messagesHost;
  return host.scrollHeight - host.scrollTop - host.clientHeight < 80;
}

function scrollToEnd(conv, instant) {
  if (state.selected !== conv.id) return;
  const host = E.messagesHost;
  requestAnimationFrame(() => { host.scrollTop = host.scrollHeight; });
  if (instant) host.scrollTop = host.scrollHeight;
}

// ---------------------------------------------------------------- actions: help, end, wrap-up

const HELP_COOLDOWN_MS = 5000;

function askHelp() {
  const conv = currentConv();
  if (!conv) return;
  conv.helpAt = Date.now();
  renderHelpButton();
  command('help', { conversation: conv.id }, {
    onAck: () => { toast(t('help.sent'), 'success'); },
    onError: (e) => {
      conv.helpAt = 0;
      renderHelpButton();
      toast(e.code === 'not_connected' ? t('error.notConnected') : errorText(e.code), 'error');
    },
  });
}

function renderHelpButton() {
  const conv = currentConv();
  E.helpButton.disabled = !conv || Date.now() - (conv.helpAt || 0) < HELP_COOLDOWN_MS;
}

function endAsk() {
  const conv = currentConv();
  if (!conv || conv.summary.state !== 'active') return;
  conv.endConfirm = true;
  E.endBar.hidden = false;
  E.endConfirm.focus();
}

function endCancel() {
  const conv = currentConv();
  if (conv) conv.endConfirm = false;
  E.endBar.hidden = true;
  E.endButton.focus();
}

function endConfirmed() {
  const conv = currentConv();
  if (!conv) return;
  conv.endConfirm = false;
  E.endBar.hidden = true;
  E.endConfirm.disabled = true;
  stopTyping(conv);
  command('end', { conversation: conv.id }, {
    onAck: () => {
      E.endConfirm.disabled = false;
      if (conv.summary.state === 'active') {
        conv.summary.state = 'wrap_up';
        renderTab(conv);
        if (state.selected === conv.id) renderPane();
      }
      if (state.selected === conv.id) E.wrapCategory.focus();
    },
    onError: (e) => { E.endConfirm.disabled = false; toast(e.code === 'not_connected' ? t('error.notConnected') : errorText(e.code), 'error'); },
  });
}

function renderCategories() {
  const current = E.wrapCategory.value;
  const first = E.wrapCategory.options[0];
  E.wrapCategory.replaceChildren(first);
  for (const c of state.categories) E.wrapCategory.append(el('option', { value: c, text: categoryName(c) }));
  if (state.categories.includes(current)) E.wrapCategory.value = current;
}

function submitWrapUp(e) {
  e.preventDefault();
  const conv = currentConv();
  if (!conv) return;
  const category = E.wrapCategory.value;
  if (!category) { E.wrapCategory.focus(); E.wrapCategory.setAttribute('aria-invalid', 'true'); return; }
  E.wrapCategory.removeAttribute('aria-invalid');
  E.wrapSubmit.disabled = true;
  conv.wrapChoice = category;
  command('wrap_up', { conversation: conv.id, category }, {
    onAck: () => {
      E.wrapSubmit.disabled = false;
      E.wrapCategory.value = '';
      conv.closingLocally = true;
      toast(t('wrapup.done'), 'success', {
        timeout: 12000,
        // A flagged conversation gets the pause offer (`removed.suggest_pause`) instead.
        action: state.presence === 'on_duty' && !conv.everFlagged ? { label: t('wrapup.rest'), run: () => setPresence('away') } : null,
      });
      // The server also sends `removed`; do not wait for it.
      dropConv(conv.id);
    },
    onError: (err) => { E.wrapSubmit.disabled = false; toast(err.code === 'not_connected' ? t('error.notConnected') : errorText(err.code), 'error'); },
  });
}

function setPresence(value) {
  const before = state.presence;
  E.presence.value = value;
  command('presence', { state: value }, {
    onAck: () => { state.presence = value; renderPresence(); },
    onError: (e) => {
      state.presence = before;
      E.presence.value = before;
      toast(e.code === 'not_connected' ? t('error.notConnected') : errorText(e.code), 'error');
    },
  });
}

// ---------------------------------------------------------------- transfer

async function openTransfer() {
  const conv = currentConv();
  if (!conv || conv.summary.state !== 'active') return;
  E.transferDialog.dataset.conversation = conv.id;
  setText(E.transferFor, 'transfer.for', { label: convLabel(conv.id) });
  E.transferNote.value = '';
  E.transferError.hidden = true;
  updateTransferCount();
  const queueOption = el('option', { value: '', i18n: ['transfer.queue'] });
  E.transferTarget.replaceChildren(queueOption);
  E.transferTarget.value = '';
  E.transferSubmit.disabled = false;
  setText(E.transferStatus, 'transfer.loading');
  if (typeof E.transferDialog.showModal === 'function') E.transferDialog.showModal();
  else E.transferDialog.setAttribute('open', '');
  E.transferTarget.focus();
  const r = await api('/api/colleagues');
  if (E.transferDialog.dataset.conversation !== conv.id) return;
  if (r.status === 401) { closeTransfer(); toLogin('login.expired'); return; }
  if (!r.ok || !Array.isArray(r.data)) {
    setText(E.transferStatus, r.network ? 'login.network' : 'error.http', { status: r.status });
    return;
  }
  const colleagues = r.data.filter((c) => c && c.id && (!state.me || c.id !== state.me.id));
  for (const c of colleagues) {
    const full = Number.isFinite(c.capacity) && Number.isFinite(c.load) && c.load >= c.capacity;
    const stateLabel = c.state && ['on_duty', 'away', 'off_duty'].includes(c.state) ? t(`presence.${c.state}`) : (c.state || '');
    E.transferTarget.append(el('option', {
      value: c.id,
      text: t('transfer.colleague', { name: c.name || '?', state: stateLabel, load: c.load ?? '?', capacity: c.capacity ?? '?' }),
      data: { full: full ? 'true' : 'false' },
    }));
  }
  if (colleagues.length === 0) setText(E.transferStatus, 'transfer.noColleagues');
  else { E.transferStatus.textContent = ''; delete E.transferStatus.dataset.i18n; }
}

function closeTransfer() {
  delete E.transferDialog.dataset.conversation;
  if (E.transferDialog.open) {
    if (typeof E.transferDialog.close === 'function') E.transferDialog.close();
    else E.transferDialog.removeAttribute('open');
  }
}

function updateTransferCount() {
  const n = charCount(E.transferNote.value);
  E.transferCount.textContent = `${n} / ${limits.note}`;
  E.transferCount.classList.toggle('over', n > limits.note);
}

function submitTransfer(e) {
  e.preventDefault();
  const id = E.transferDialog.dataset.conversation;
  const conv = id && state.convs.get(id);
  if (!conv) { closeTransfer(); return; }
  const note = E.transferNote.value.trim();
  if (charCount(note) > limits.note) {
    setText(E.transferError, 'error.text_too_long');
    E.transferError.hidden = false;
    return;
  }
  const to = E.transferTarget.value || null;
  E.transferSubmit.disabled = true;
  stopTyping(conv);
  command('transfer', { conversation: conv.id, to, note }, {
    onAck: () => {
      E.transferSubmit.disabled = false;
      closeTransfer();
      conv.closingLocally = true;
      toast(t('transfer.done'), 'success');
    },
    onError: (err) => {
      E.transferSubmit.disabled = false;
      E.transferError.textContent = err.code === 'not_connected' ? t('error.notConnected') : errorText(err.code);
      delete E.transferError.dataset.i18n;
      E.transferError.hidden = false;
    },
  });
}

// ---------------------------------------------------------------- emergency flag

// The one path that keeps anything of a conversation beyond its close (DESIGN.md, principle 3):
// the operator records a category and a short reason, confirms, and the server keeps a minimal
// encrypted escalation record and alerts the coordinators. The checklist ticks are local only.

function itemText(v) {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object') return String(v.text ?? v.label ?? v.id ?? v.category ?? '');
  return v === null || v === undefined ? '' : String(v);
}

function emergencyOpen(conv) {
  const em = conv && conv.summary && conv.summary.emergency;
  return !!(em && typeof em === 'object' && em.open === true);
}

function onEmergencyChange(conv) {
  const em = conv.summary.emergency || {};
  const label = convLabel(conv.id);
  if (emergencyOpen(conv)) {
    // Raised by someone else (a coordinator): make sure the operator notices.
    if (!conv.flagSending && (!state.me || em.raised_by !== state.me.name)) {
      toast(t('flag.raisedByOther', { label, name: em.raised_by || '?' }), 'error', { timeout: 15000 });
      tone('offer');
    }
  } else {
    toast(t('flag.cleared', { label }), 'info', { timeout: 10000 });
  }
}

function renderEmergency(conv) {
  const open = emergencyOpen(conv);
  E.emergencyBanner.hidden = !open;
  E.pane.dataset.emergency = open ? 'true' : 'false';
  setText(E.flagButton, open ? 'flag.add' : 'flag.button');
  const st = conv && conv.summary.state;
  E.flagButton.disabled = !conv || !state.flagEnabled || (st !== 'active' && st !== 'wrap_up');
  if (state.flagEnabled) E.flagButton.removeAttribute('title');
  else E.flagButton.title = t('flag.notEnabled');
  if (!open) return;
  const em = conv.summary.emergency;
  const cats = Array.isArray(em.categories) ? em.categories.map(itemText) : [];
  E.emergencyCategories.replaceChildren(...cats.map((c) =>
    el('li', { class: 'chip chip-emergency', data: { category: c }, text: flagCategoryName(c) })));
  const at = toMs(em.raised_at);
  setText(E.emergencyRaised, Number.isFinite(at) ? 'emergency.raised' : 'emergency.raisedNoTime',
    { name: em.raised_by || '?', time: Number.isFinite(at) ? fmtClock(at) : '' });
  const acked = em.acknowledged_by !== null && em.acknowledged_by !== undefined && em.acknowledged_by !== '';
  setText(E.emergencyAcked, acked ? 'emergency.acked' : 'emergency.notAcked', { name: acked ? itemText(em.acknowledged_by) : '' });
  E.emergencyAcked.dataset.acknowledged = acked ? 'true' : 'false';
  renderChecklist(conv);
}

function renderChecklist(conv) {
  const items = state.emergencyChecklist;
  // Rebuild only when the conversation or the list changes, so ticking never loses focus.
  const sig = JSON.stringify([conv.id, items]);
  E.emergencyChecklistEmpty.hidden = items.length > 0;
  if (E.emergencyChecklist.dataset.sig === sig) return;
  E.emergencyChecklist.dataset.sig = sig;
  if (!conv.checks) conv.checks = new Set();
  E.emergencyChecklist.replaceChildren(...items.map((text, i) => {
    const id = `check-${conv.id}-${i}`;
    const box = el('input', { type: 'checkbox', id, data: { testid: 'checklist-item' } });
    box.checked = conv.checks.has(text);
    box.addEventListener('change', () => {
      if (box.checked) conv.checks.add(text); else conv.checks.delete(text);
      box.closest('li').classList.toggle('done', box.checked);
    });
    const li = el('li', { class: box.checked ? 'done' : '' }, box, el('label', { for: id, text }));
    return li;
  }));
}

function renderFlagCategories() {
  const current = E.flagCategory.value;
  const first = E.flagCategory.options[0];
  E.flagCategory.replaceChildren(first);
  for (const c of state.emergencyCategories) E.flagCategory.append(el('option', { value: c, text: flagCategoryName(c) }));
  if (state.emergencyCategories.includes(current)) E.flagCategory.value = current;
}

function openFlag() {
  const conv = currentConv();
  if (!conv) return;
  const st = conv.summary.state;
  if (st !== 'active' && st !== 'wrap_up') return;
  if (!state.flagEnabled) { toast(t('flag.notEnabled'), 'error'); return; }
  state.flag = { conversation: conv.id, clientId: null, key: null, busy: false };
  setText(E.flagHeading, emergencyOpen(conv) ? 'flag.titleAdd' : 'flag.title');
  setText(E.flagFor, 'flag.for', { label: convLabel(conv.id) });
  renderFlagCategories();
  E.flagCategory.value = '';
  E.flagReason.value = '';
  E.flagCategory.removeAttribute('aria-invalid');
  E.flagReason.removeAttribute('aria-invalid');
  updateFlagCount();
  flagError(null);
  flagStep('edit');
  if (typeof E.flagDialog.showModal === 'function') E.flagDialog.showModal();
  else E.flagDialog.setAttribute('open', '');
  E.flagCategory.focus();
}

function closeFlag(force) {
  if (state.flag && state.flag.busy && !force) {
    // The flag is on its way: closing only hides the dialog; the answer still shows as a toast.
    state.flag.hiddenWhileBusy = true;
  } else {
    state.flag = null;
  }
  if (E.flagDialog.open) {
    if (typeof E.flagDialog.close === 'function') E.flagDialog.close();
    else E.flagDialog.removeAttribute('open');
  }
}

function flagStep(step) {
  const confirm = step === 'confirm';
  E.flagStepEdit.hidden = confirm;
  E.flagStepConfirm.hidden = !confirm;
  E.flagSubmit.hidden = confirm;
  E.flagConfirm.hidden = !confirm;
  E.flagBack.hidden = !confirm;
  E.flagConfirm.disabled = false;
  E.flagBack.disabled = false;
  E.flagSubmit.disabled = false;
  if (confirm) setText($('#flag-confirm-text'), 'flag.confirmText');
}

function flagError(key, vars, text) {
  if (!key && !text) { E.flagError.hidden = true; E.flagError.textContent = ''; delete E.flagError.dataset.i18n; return; }
  if (key) setText(E.flagError, key, vars);
  else { E.flagError.textContent = text; delete E.flagError.dataset.i18n; }
  E.flagError.hidden = false;
}

function setInvalid(node, invalid) {
  if (invalid) node.setAttribute('aria-invalid', 'true'); else node.removeAttribute('aria-invalid');
}

function updateFlagCount() {
  const n = charCount(E.flagReason.value.trim());
  E.flagCount.textContent = `${n} / ${limits.note}`;
  E.flagCount.classList.toggle('over', n > limits.note);
}

/** First button: check the input, then show the explicit confirm step. */
function submitFlagForm(e) {
  e.preventDefault();
  if (!state.flag) return;
  if (!E.flagStepConfirm.hidden) { confirmFlag(); return; }
  const category = E.flagCategory.value;
  const reason = E.flagReason.value.trim();
  setInvalid(E.flagCategory, !category);
  if (!category) { flagError('flag.needCategory'); E.flagCategory.focus(); return; }
  const n = charCount(reason);
  setInvalid(E.flagReason, n === 0 || n > limits.note);
  if (n === 0) { flagError('flag.needReason'); E.flagReason.focus(); return; }
  if (n > limits.note) { flagError('flag.reasonTooLong', { max: limits.note }); E.flagReason.focus(); return; }
  flagError(null);
  E.flagSummaryCategory.textContent = flagCategoryName(category);
  E.flagSummaryReason.textContent = reason;
  flagStep('confirm');
  E.flagConfirm.focus();
}

function flagBack() {
  if (state.flag && state.flag.busy) return;
  flagError(null);
  flagStep('edit');
  E.flagReason.focus();
}

/** Second button: send `flag`. A retry of the same category and reason reuses the client id. */
function confirmFlag() {
  const f = state.flag;
  if (!f || f.busy) return;
  const conv = state.convs.get(f.conversation);
  if (!conv) { closeFlag(true); toast(errorText('not_found'), 'error'); return; }
  const category = E.flagCategory.value;
  const reason = E.flagReason.value.trim();
  if (!category || !reason) { flagBack(); return; }
  const key = `${category}\u0000${reason}`;
  if (!f.clientId || f.key !== key) { f.clientId = ulid(); f.key = key; }
  f.busy = true;
  E.flagConfirm.disabled = true;
  E.flagBack.disabled = true;
  flagError(null);
  conv.flagSending = true;
  const done = () => { f.busy = false; conv.flagSending = false; };
  const failed = (keyOrText, keepId) => {
    done();
    if (!keepId) f.clientId = null;
    if (state.flag !== f) { toast(keyOrText, 'error', { timeout: 0 }); return; }
    if (f.hiddenWhileBusy) { toast(keyOrText, 'error', { timeout: 0 }); state.flag = null; return; }
    E.flagConfirm.disabled = false;
    E.flagBack.disabled = false;
    flagError(null, null, keyOrText);
  };
  command('flag', { conversation: conv.id, category, reason }, {
    id: f.clientId,
    onAck: () => {
      done();
      if (state.flag === f) closeFlag(true);
      toast(t('flag.done'), 'success', { timeout: 10000 });
    },
    onError: (err) => {
      // Nothing was stored for `unavailable` / not connected: a retry keeps the same id.
      const keep = err.code === 'unavailable' || err.code === 'not_connected';
      const text = err.code === 'not_connected' ? t('error.notConnected') : errorText(err.code, 'flag');
      failed(text, keep);
    },
    onInterrupt: () => failed(t('flag.interrupted'), true),
  });
}

// ---------------------------------------------------------------- pause after a hard conversation

function offerPause() {
  if (E.pauseOffer.open) return;
  if (typeof E.pauseOffer.showModal === 'function') E.pauseOffer.showModal();
  else E.pauseOffer.setAttribute('open', '');
  E.pauseAccept.focus();
}

function closePause() {
  if (!E.pauseOffer.open) return;
  if (typeof E.pauseOffer.close === 'function') E.pauseOffer.close();
  else E.pauseOffer.removeAttribute('open');
}

function acceptPause() {
  closePause();
  if (state.presence === 'on_duty') setPresence('away');
  toast(t('pause.started'), 'info', { timeout: 10000 });
}

// ---------------------------------------------------------------- phrases and directory

function toggleTool(which) {
  if (state.toolsOpen === which) { closeTools(); return; }
  state.toolsOpen = which;
  E.tools.hidden = false;
  E.phrasesPanel.hidden = which !== 'phrases';
  E.directoryPanel.hidden = which !== 'directory';
  E.phrasesButton.setAttribute('aria-expanded', String(which === 'phrases'));
  E.directoryButton.setAttribute('aria-expanded', String(which === 'directory'));
  document.body.classList.add('tools-open');
  if (which === 'phrases') {
    if (!state.phrases) loadPhrases(); else renderPhrases();
    E.phraseFilter.focus();
  } else {
    if (!state.directory) loadDirectory(); else renderDirectory();
    E.directorySearch.focus();
  }
}

function closeTools() {
  const was = state.toolsOpen;
  state.toolsOpen = null;
  E.tools.hidden = true;
  E.phrasesPanel.hidden = true;
  E.directoryPanel.hidden = true;
  E.phrasesButton.setAttribute('aria-expanded', 'false');
  E.directoryButton.setAttribute('aria-expanded', 'false');
  document.body.classList.remove('tools-open');
  if (was && !E.pane.hidden && !E.composer.hidden) E.input.focus();
}

async function loadPhrases() {
  setText(E.phrasesStatus, 'tools.loading');
  const r = await api('/api/phrases');
  if (r.status === 401) { toLogin('login.expired'); return; }
  if (!r.ok || !Array.isArray(r.data)) { setText(E.phrasesStatus, 'tools.loadError'); return; }
  state.phrases = r.data.filter((p) => p && typeof p.text === 'string');
  renderPhrases();
}

async function loadDirectory() {
  setText(E.directoryStatus, 'tools.loading');
  const r = await api('/api/directory');
  if (r.status === 401) { toLogin('login.expired'); return; }
  if (!r.ok || !Array.isArray(r.data)) { setText(E.directoryStatus, 'tools.loadError'); return; }
  state.directory = r.data.filter((d) => d && typeof d.name === 'string');
  renderDirectory();
}

function norm(s) { return String(s ?? '').normalize('NFKC').toLowerCase(); }

function renderPhrases() {
  if (!state.phrases) return;
  const q = norm(E.phraseFilter.value).trim();
  const conv = currentConv();
  const lang = conv && conv.summary.language;
  const terms = q.split(/\s+/).filter(Boolean);
  const list = state.phrases
    .filter((p) => terms.every((w) => norm(`${p.title} ${p.text} ${p.lang}`).includes(w)))
    .sort((a, b) => (b.lang === lang) - (a.lang === lang));
  E.phraseList.replaceChildren(...list.map((p) => {
    const b = el('button', { type: 'button', class: 'phrase', data: { testid: 'phrase', phraseId: p.id ?? '' } },
      el('span', { class: 'phrase-title' }, p.title || '', p.lang ? el('span', { class: 'chip chip-small', text: p.lang }) : null),
      el('span', { class: 'phrase-text', text: p.text }));
    b.addEventListener('click', () => insertText(p.text));
    return el('li', {}, b);
  }));
  if (list.length === 0) setText(E.phrasesStatus, 'phrases.empty');
  else { E.phrasesStatus.textContent = ''; delete E.phrasesStatus.dataset.i18n; }
}

function helpsText(h) { return Array.isArray(h) ? h.join('、') : String(h ?? ''); }

function safeWeb(url) {
  try {
    const u = new URL(String(url));
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch (_) { return null; }
}

function renderDirectory() {
  if (!state.directory) return;
  const terms = norm(E.directorySearch.value).trim().split(/\s+/).filter(Boolean);
  const list = state.directory.filter((d) => terms.every((w) =>
    norm(`${d.name} ${helpsText(d.helps_with)} ${d.hours} ${d.phone} ${d.web} ${d.notes}`).includes(w)));
  E.directoryList.replaceChildren(...list.map((d) => {
    const dl = el('dl', { class: 'dir-fields' });
    const field = (key, value) => {
      if (value === undefined || value === null || value === '') return;
      dl.append(el('dt', { i18n: [key] }), el('dd', {}, value));
    };
    field('directory.helps', helpsText(d.helps_with) || null);
    field('directory.hours', d.hours);
    field('directory.phone', d.phone ? el('span', { class: 'phone', text: d.phone }) : null);
    const web = d.web && safeWeb(d.web);
    field('directory.web', web ? el('a', { href: web, target: '_blank', rel: 'noopener noreferrer', text: d.web }) : (d.web || null));
    field('directory.notes', d.notes);
    const insert = el('button', { type: 'button', class: 'btn btn-small', data: { testid: 'directory-insert' }, i18n: ['directory.insert'] });
    insert.addEventListener('click', () => insertText(referralText(d)));
    return el('li', { class: 'dir-entry', data: { testid: 'directory-entry', entryId: d.id ?? '' } },
      el('h3', { text: d.name }), dl, insert);
  }));
  if (list.length === 0) setText(E.directoryStatus, 'directory.empty');
  else { E.directoryStatus.textContent = ''; delete E.directoryStatus.dataset.i18n; }
}

/** Referral text for the person, in the language of the conversation where we can. */
function referralText(d) {
  const conv = currentConv();
  const en = conv && conv.summary.language && !String(conv.summary.language).startsWith('ja');
  const lines = [en ? `[${d.name}]` : `【${d.name}】`];
  const helps = helpsText(d.helps_with);
  if (helps) lines.push(helps);
  if (d.phone) lines.push(`${en ? 'Phone' : '電話'}: ${d.phone}${d.hours ? (en ? ` (${d.hours})` : `（${d.hours}）`) : ''}`);
  else if (d.hours) lines.push(`${en ? 'Hours' : '受付時間'}: ${d.hours}`);
  if (d.web) lines.push(String(d.web));
  return lines.join('\n');
}

function insertText(text) {
  const conv = currentConv();
  if (!conv || E.composer.hidden) return;
  const input = E.input;
  const start = input.selectionStart ?? input.value.length;
  const end = input.selectionEnd ?? input.value.length;
  const before = input.value.slice(0, start);
  const sep = before && !before.endsWith('\n') ? '\n' : '';
  input.setRangeText(sep + text, start, end, 'end');
  input.focus();
  onLocalInput();
}

// ---------------------------------------------------------------- timers

function tick() {
  renderQueue();
  for (const entry of [...state.offers.values()]) updateOfferTimes(entry);
  for (const conv of state.convs.values()) updateTabTimer(conv);
  updatePaneTimer();
  renderTyping();
  renderHelpButton();
  if (state.reconnectTimer && E.conn.dataset.state === 'reconnecting') {
    const s = Math.max(0, Math.ceil((state.reconnectAt - Date.now()) / 1000));
    setText(E.connText, 'conn.reconnectingIn', { s });
  }
  // Repeat the offer tone while an offer waits: nobody waits unseen.
  if (state.offers.size > 0 && Date.now() - state.lastOfferTone > OFFER_REPEAT_TONE_MS) {
    tone('offer');
    state.lastOfferTone = Date.now();
  }
}

// ---------------------------------------------------------------- wiring

function wireUi() {
  E.logout.addEventListener('click', async () => {
    E.logout.disabled = true;
    state.stopped = true;
    await apiLogout();
    E.logout.disabled = false;
    toLogin(null);
  });
  E.reconnectHere.addEventListener('click', () => {
    state.stopped = false;
    state.attempt = 0;
    E.reconnectHere.hidden = true;
    connectNow();
  });
  E.presence.addEventListener('change', () => setPresence(E.presence.value));
  E.takeNext.addEventListener('click', takeNext);

  E.composer.addEventListener('submit', (e) => { e.preventDefault(); sendCurrent(); });
  E.input.addEventListener('keydown', (e) => {
    // Enter sends; Shift+Enter is a newline; never send while an IME is composing (Japanese input).
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      sendCurrent();
    }
  });
  E.input.addEventListener('input', onLocalInput);
  E.input.addEventListener('blur', () => { const c = currentConv(); if (c) c.draft = E.input.value; });

  E.helpButton.addEventListener('click', askHelp);
  E.endButton.addEventListener('click', endAsk);
  E.endCancel.addEventListener('click', endCancel);
  E.endConfirm.addEventListener('click', endConfirmed);
  E.wrapForm.addEventListener('submit', submitWrapUp);
  E.wrapCategory.addEventListener('change', () => E.wrapCategory.removeAttribute('aria-invalid'));

  E.transferButton.addEventListener('click', openTransfer);
  E.transferForm.addEventListener('submit', submitTransfer);
  E.transferCancel.addEventListener('click', closeTransfer);
  E.transferDialog.addEventListener('close', () => { delete E.transferDialog.dataset.conversation; });
  E.transferNote.addEventListener('input', updateTransferCount);

  E.flagButton.addEventListener('click', openFlag);
  E.flagForm.addEventListener('submit', submitFlagForm);
  E.flagConfirm.addEventListener('click', confirmFlag);
  E.flagBack.addEventListener('click', flagBack);
  E.flagCancel.addEventListener('click', () => closeFlag(false));
  E.flagDialog.addEventListener('close', () => {
    if (!state.flag) return;
    if (state.flag.busy) state.flag.hiddenWhileBusy = true; // the answer will show as a toast
    else state.flag = null;
  });
  E.flagReason.addEventListener('input', () => { updateFlagCount(); E.flagReason.removeAttribute('aria-invalid'); });
  E.flagCategory.addEventListener('change', () => E.flagCategory.removeAttribute('aria-invalid'));
  E.pauseAccept.addEventListener('click', acceptPause);
  E.pauseDecline.addEventListener('click', closePause);

  E.phrasesButton.addEventListener('click', () => toggleTool('phrases'));
  E.directoryButton.addEventListener('click', () => toggleTool('directory'));
  for (const b of document.querySelectorAll('.tool-close')) b.addEventListener('click', closeTools);
  E.phraseFilter.addEventListener('input', renderPhrases);
  E.directorySearch.addEventListener('input', renderDirectory);
  E.tools.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeTools(); });
}
