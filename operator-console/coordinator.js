// Tsunagu coordinator view: live queue and staffing numbers from
// GET /api/dashboard/stream (Server-Sent Events, event "stats"), help-request and emergency
// alerts, open emergencies, live conversations (GET /api/conversations, without content) with
// raise / clear flag, escalation records (every read is audited) and, for admins, the audit trail.

import { t, setText, initI18n, onLangChange } from '/console/i18n.js';
import { api, getMe, logout as apiLogout, bindLoginForm, showLoginError } from '/console/auth.js';
import { tone, installAudioUnlock, bindSoundToggle } from '/console/sound.js';
import {
  $, el, byTestId, convLabel, fmtMmSs, fmtClock, fmtDateTime, fmtDuration, toMs, charCount, channelName, langName,
  categoryName, flagCategoryName, EMERGENCY_CATEGORIES, toast,
} from '/console/util.js';
import { has } from '/console/i18n.js';

const ALLOWED_ROLES = ['coordinator', 'admin'];
const ALERT_REMINDER_MS = 20000;
const EMERGENCY_REMINDER_MS = 5000;   // an unacknowledged emergency keeps sounding
const STALE_MS = 5000;
const CONVERSATIONS_POLL_MS = 5000;
const AUDIT_POLL_MS = 30000;
const MAX_REASON = 500;

const state = {
  me: null,
  es: null,
  stopped: true,
  attempt: 0,
  retryTimer: null,
  lastStats: 0,
  snapshot: null,
  seenAlerts: new Set(),
  ackedLocally: new Map(),  // alert id -> my name (until the snapshot says so)
  alertEls: new Map(),
  lastAlertTone: 0,
  lastEmergencyTone: 0,
  emergencyRows: new Map(),  // conversation id -> <tr>
  convs: [],
  convRows: new Map(),
  convLoading: false,
  escalations: [],
  escRows: new Map(),
  escLoading: false,
  audit: [],
  auditLoading: false,
  auditHidden: false,
  timers: [],
  flag: null,                // { conversation, busy }
  clear: null,               // { conversation, busy }
  recordId: null,
  emergencySig: null,        // open emergencies last seen (a change reloads the records)
};

const E = {
  loginView: $('#login-view'),
  loginForm: $('#login-form'),
  loginNotice: $('#login-notice'),
  forbiddenView: $('#forbidden-view'),
  dashView: $('#dash-view'),
  statusBar: $('#status-bar'),
  stream: $('#stream-status'),
  streamText: $('#stream-text'),
  updated: $('#updated'),
  sound: $('#sound-toggle'),
  meName: $('#me-name'),
  logout: $('#logout'),
  lang: $('#lang-switch'),
  banners: $('#banners'),
  waiting: $('#stat-waiting'),
  byChannel: $('#by-channel'),
  longest: $('#stat-longest-wait'),
  onDuty: $('#stat-on-duty'),
  away: $('#stat-away'),
  offDuty: $('#stat-off-duty'),
  busy: $('#stat-busy'),
  free: $('#stat-free'),
  active: $('#stat-active'),
  queued: $('#stat-queued'),
  offered: $('#stat-offered'),
  wrapUp: $('#stat-wrap-up'),
  started: $('#stat-started'),
  closed: $('#stat-closed'),
  abandoned: $('#stat-abandoned'),
  cardWaiting: $('#card-waiting'),
  cardLongest: $('#card-longest'),
  cardOperators: $('#card-operators'),
  alerts: $('#alerts'),
  alertsEmpty: $('#alerts-empty'),
  alertsCount: $('#alerts-count'),
  emergencySection: $('#emergency-section'),
  emergencyCount: $('#emergency-count'),
  emergencyAlerts: $('#emergency-alerts'),
  emergencies: $('#emergencies'),
  emergenciesEmpty: $('#emergencies-empty'),
  convRows: $('#conv-rows'),
  convsEmpty: $('#convs-empty'),
  convsStatus: $('#convs-status'),
  convsUpdated: $('#convs-updated'),
  escRows: $('#escalation-rows'),
  escEmpty: $('#escalations-empty'),
  escStatus: $('#escalations-status'),
  escUpdated: $('#escalations-updated'),
  auditSection: $('#audit-section'),
  auditRows: $('#audit-rows'),
  auditEmpty: $('#audit-empty'),
  auditStatus: $('#audit-status'),
  auditUpdated: $('#audit-updated'),
  overloadedState: $('#overloaded-state'),
  overloadedToggle: $('#overloaded-toggle'),
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
  clearDialog: $('#clear-dialog'),
  clearForm: $('#clear-form'),
  clearFor: $('#clear-for'),
  clearReason: $('#clear-reason'),
  clearError: $('#clear-error'),
  clearCancel: $('#clear-cancel'),
  clearSubmit: $('#clear-submit'),
  recordDialog: $('#record-dialog'),
  recordAudit: $('#record-audit'),
  recordStatus: $('#record-status'),
  recordBody: $('#record-body'),
  recordConversation: $('#record-conversation'),
  recordChannel: $('#record-channel'),
  recordChannelRef: $('#record-channel-ref'),
  recordCreated: $('#record-created'),
  recordExpires: $('#record-expires'),
  recordFlags: $('#record-flags'),
  recordActions: $('#record-actions'),
  recordTranscript: $('#record-transcript'),
  recordClose: $('#record-close'),
  recordState: $('#record-state'),
  escRefresh: $('#escalations-refresh'),
  escNote: $('#escalations-note'),
  escTable: $('#escalations-table'),
  flaggingOff: $('#flagging-off'),
};

initI18n(E.lang);
installAudioUnlock();
const renderSound = bindSoundToggle(E.sound, t);
onLangChange(() => {
  renderSound();
  if (state.snapshot) render(state.snapshot);
  if (state.me) E.meName.textContent = t('signedInAs', { name: state.me.name || '' });
  renderFlagCategories();
  renderConversations();
  renderEscalations();
  renderAudit();
  updateTitle();
});
bindLoginForm(E.loginForm, (me) => start(me));
E.logout.addEventListener('click', async () => {
  stopStream();
  await apiLogout();
  showLogin(null);
});
wirePanels();
setInterval(tick, 1000);
boot();

async function boot() {
  updateTitle();
  const r = await getMe();
  if (r.ok && r.data) start(r.data);
  else showLogin(r.network ? 'login.network' : null);
}

function showView(which) {
  E.loginView.hidden = which !== 'login';
  E.forbiddenView.hidden = which !== 'forbidden';
  E.dashView.hidden = which !== 'dash';
  E.statusBar.hidden = which === 'login';
}

function showLogin(noticeKey) {
  stopStream();
  state.me = null;
  showView('login');
  if (noticeKey) { setText(E.loginNotice, noticeKey); E.loginNotice.hidden = false; } else E.loginNotice.hidden = true;
  showLoginError(E.loginForm, null);
  byTestId('login-username', E.loginForm).focus();
}

function showForbidden() {
  stopStream();
  showView('forbidden');
  setStream('offline');
}

async function start(me) {
  state.me = me;
  E.meName.textContent = t('signedInAs', { name: me.name || '' });
  if (!ALLOWED_ROLES.includes(me.role)) { showForbidden(); return; }
  showView('dash');
  // One snapshot first: it also tells us plainly about 401 / 403.
  const r = await api('/api/dashboard');
  if (r.status === 401) { showLogin('login.expired'); return; }
  if (r.status === 403) { showForbidden(); return; }
  if (r.ok && r.data && typeof r.data === 'object') onStats(r.data);
  state.stopped = false;
  state.attempt = 0;
  startStream();
  startPanels();
}

// ---------------------------------------------------------------- stream

function startStream() {
  clearTimeout(state.retryTimer);
  if (state.stopped) return;
  if (state.es) state.es.close();
  setStream('reconnecting');
  const es = new EventSource('/api/dashboard/stream', { withCredentials: true });
  state.es = es;
  es.addEventListener('open', () => { if (state.es === es) { state.attempt = 0; setStream('connected'); } });
  es.addEventListener('stats', (e) => {
    if (state.es !== es) return;
    let data;
    try { data = JSON.parse(e.data); } catch (_) { return; }
    if (!data || typeof data !== 'object') return;
    state.attempt = 0;
    try { onStats(data); } catch (err) { console.error('coordinator: bad snapshot', err); }
    setStream('connected');
  });
  es.addEventListener('error', async () => {
    if (state.es !== es) return;
    if (es.readyState === EventSource.CONNECTING) { setStream('reconnecting'); return; }
    // CLOSED: the browser gave up (for example a 401 or 403 answer). Find out why.
    es.close();
    state.es = null;
    setStream('offline');
    const me = await getMe();
    if (state.stopped) return;
    if (me.status === 401) { showLogin('login.expired'); return; }
    if (me.ok && me.data && !ALLOWED_ROLES.includes(me.data.role)) { showForbidden(); return; }
    const base = Math.min(10000, 500 * 2 ** state.attempt);
    state.attempt += 1;
    state.retryTimer = setTimeout(startStream, Math.max(500, base / 2 + Math.random() * base / 2));
  });
}

function stopStream() {
  state.stopped = true;
  clearTimeout(state.retryTimer);
  if (state.es) { state.es.close(); state.es = null; }
  stopPanels();
}

function setStream(st) {
  E.stream.dataset.state = st;
  setText(E.streamText, `coord.stream.${st}`);
}

function tick() {
  if (!state.stopped && state.lastStats && Date.now() - state.lastStats > STALE_MS && E.stream.dataset.state === 'connected') {
    setStream('reconnecting');
  }
  if (state.snapshot) renderAlertTimes();
  updateSince(E.emergencies);
  updateSince(E.convRows);
  const now = Date.now();
  if (unackedCount('emergency') > 0) {
    // Repeats until acknowledged.
    if (now - state.lastEmergencyTone > EMERGENCY_REMINDER_MS) { tone('emergency'); state.lastEmergencyTone = now; }
  } else if (unackedCount() > 0 && now - state.lastAlertTone > ALERT_REMINDER_MS) {
    tone('alert');
    state.lastAlertTone = now;
  }
}

// ---------------------------------------------------------------- rendering

function num(v) { return Number.isFinite(v) ? v : 0; }

function onStats(s) {
  state.snapshot = s;
  state.lastStats = Date.now();
  render(s);
}

function render(s) {
  const ops = s.operators || {};
  const conv = s.conversations || {};
  const today = s.today || {};
  const waiting = num(s.waiting);
  const onDuty = num(ops.on_duty);

  E.waiting.textContent = String(waiting);
  E.longest.textContent = waiting > 0 || num(s.longest_wait_ms) > 0 ? fmtMmSs(num(s.longest_wait_ms)) : '00:00';
  const channels = Object.entries(s.waiting_by_channel || {});
  E.byChannel.replaceChildren(...channels.flatMap(([ch, n]) => [el('dt', { text: channelName(ch) }), el('dd', { text: String(num(n)) })]));

  E.onDuty.textContent = String(onDuty);
  E.away.textContent = String(num(ops.away));
  E.offDuty.textContent = String(num(ops.off_duty));
  E.busy.textContent = String(num(ops.busy));
  E.free.textContent = String(num(ops.free_capacity));
  E.free.classList.toggle('hot', num(ops.free_capacity) === 0 && waiting > 0);

  E.active.textContent = String(num(conv.active));
  E.queued.textContent = String(num(conv.queued));
  E.offered.textContent = String(num(conv.offered));
  E.wrapUp.textContent = String(num(conv.wrap_up));

  E.started.textContent = String(num(today.started));
  E.closed.textContent = String(num(today.closed));
  E.abandoned.textContent = String(num(today.abandoned));

  const thin = onDuty < 2;
  const long = waiting > 5;
  E.cardOperators.classList.toggle('hot', thin);
  E.cardWaiting.classList.toggle('hot', long);
  E.cardLongest.classList.toggle('hot', long);
  const banners = [];
  if (thin) banners.push(el('p', { class: 'banner', data: { testid: 'alert-thin' }, i18n: ['coord.thin', { n: onDuty }] }));
  if (long) banners.push(el('p', { class: 'banner', data: { testid: 'alert-queue' }, i18n: ['coord.queueLong', { n: waiting }] }));
  // Only touch the live region when the set of banners changes.
  const sig = `${thin ? onDuty : '-'}|${long ? waiting : '-'}`;
  if (E.banners.dataset.sig !== sig) { E.banners.dataset.sig = sig; E.banners.replaceChildren(...banners); }

  renderOverloaded(s.overloaded === true);

  E.updated.textContent = t('coord.updated', { time: fmtClock(Date.now(), true) });
  renderAlerts(Array.isArray(s.alerts) ? s.alerts : []);
  renderEmergencies(Array.isArray(s.emergencies) ? s.emergencies : []);
  updateTitle();
}

function isAcked(a) {
  return (a.acknowledged_by !== null && a.acknowledged_by !== undefined) || state.ackedLocally.has(a.id);
}

/** Unacknowledged alerts; kind 'emergency' counts only those. */
function unackedCount(kind) {
  if (!state.snapshot || !Array.isArray(state.snapshot.alerts)) return 0;
  return state.snapshot.alerts.filter((a) => a && a.id && !isAcked(a) && (!kind || a.kind === kind)).length;
}

const isEmergency = (a) => a.kind === 'emergency';

function renderAlerts(alerts) {
  const list = alerts.filter((a) => a && a.id);
  // Unacknowledged first, newest first.
  list.sort((a, b) => (isAcked(a) - isAcked(b)) || (toMs(b.at) - toMs(a.at)));
  let newUnacked = false;
  let newEmergency = false;
  const keep = new Set();
  for (const a of list) {
    keep.add(a.id);
    if (!state.seenAlerts.has(a.id)) {
      state.seenAlerts.add(a.id);
      if (!isAcked(a)) newUnacked = true;
      if (isEmergency(a)) newEmergency = true;
    }
    if (a.acknowledged_by) state.ackedLocally.delete(a.id);
    let item = state.alertEls.get(a.id);
    if (!item) { item = buildAlert(a); state.alertEls.set(a.id, item); }
    updateAlert(item, a);
  }
  for (const [id, item] of state.alertEls) {
    if (!keep.has(id)) { item.remove(); state.alertEls.delete(id); }
  }
  // Emergencies have their own list at the very top; help requests stay in theirs.
  const emergencies = list.filter(isEmergency);
  const others = list.filter((a) => !isEmergency(a));
  placeInOrder(E.emergencyAlerts, emergencies.map((a) => state.alertEls.get(a.id)));
  placeInOrder(E.alerts, others.map((a) => state.alertEls.get(a.id)));
  E.alertsEmpty.hidden = others.length > 0;
  const unacked = others.filter((a) => !isAcked(a)).length;
  E.alertsCount.hidden = unacked === 0;
  E.alertsCount.textContent = String(unacked);
  const unackedEm = emergencies.filter((a) => !isAcked(a)).length;
  E.emergencyCount.hidden = unackedEm === 0;
  E.emergencyCount.textContent = String(unackedEm);
  E.emergencyAlerts.hidden = emergencies.length === 0;
  if (newEmergency) {
    // A new flag: the record and the conversation's state are worth fetching now.
    loadEscalations();
    loadConversations();
  }
  if (newUnacked && unackedEm > 0 && newEmergency) { tone('emergency'); state.lastEmergencyTone = Date.now(); }
  else if (newUnacked) { tone('alert'); state.lastAlertTone = Date.now(); }
  renderEmergencySectionState();
}

/** Reorder only when the order changed (moving nodes would re-announce them and drop focus). */
function placeInOrder(host, wanted) {
  const current = Array.from(host.children);
  if (wanted.length === current.length && wanted.every((node, i) => node === current[i])) return;
  const focused = document.activeElement;
  host.replaceChildren(...wanted);
  if (focused && host.contains(focused)) focused.focus();
}

function buildAlert(a) {
  const kind = isEmergency(a) ? 'emergency' : String(a.kind || 'other');
  const item = el('li', {
    class: `alert-item${kind === 'emergency' ? ' alert-emergency' : ''}`,
    data: { testid: 'alert', alertId: a.id, kind, acknowledged: 'false' },
  });
  const main = el('div', { class: 'alert-main' },
    el('p', { class: 'alert-title', data: { role: 'title' } }),
    el('p', { class: 'alert-meta', data: { role: 'conv' } }),
    el('p', { class: 'alert-meta', data: { role: 'time' } }));
  const ackedBy = el('p', { class: 'alert-meta', data: { role: 'acked' } });
  const btn = el('button', { type: 'button', class: 'btn btn-primary', data: { testid: 'alert-ack' }, i18n: ['coord.ack'] });
  btn.addEventListener('click', () => ackAlert(a.id, btn));
  item.append(main, ackedBy, btn);
  return item;
}

function updateAlert(item, a) {
  const acked = isAcked(a);
  item.dataset.acknowledged = acked ? 'true' : 'false';
  item.dataset.at = String(toMs(a.at));
  const kind = a.kind === 'help' || a.kind === 'emergency' ? a.kind : 'other';
  const title = item.querySelector('[data-role="title"]');
  if (kind === 'emergency') {
    item.dataset.category = String(a.category ?? '');
    setText(title, a.category ? 'coord.alert.emergencyCat' : 'coord.alert.emergency',
      { operator: a.operator || t('coord.noOperator'), category: flagCategoryName(a.category) });
  } else {
    setText(title, `coord.alert.${kind}`, { operator: a.operator || '?', kind: a.kind || '?' });
  }
  const convEl = item.querySelector('[data-role="conv"]');
  if (a.conversation) setText(convEl, 'coord.alert.conv', { label: convLabel(a.conversation) });
  else convEl.textContent = '';
  const ackedEl = item.querySelector('[data-role="acked"]');
  const by = a.acknowledged_by || state.ackedLocally.get(a.id);
  ackedEl.hidden = !acked;
  if (acked) setText(ackedEl, 'coord.acked', { name: by || '?' });
  const btn = item.querySelector('[data-testid="alert-ack"]');
  btn.hidden = acked;
  updateAlertTime(item);
}

function updateAlertTime(item) {
  const at = Number(item.dataset.at);
  const el2 = item.querySelector('[data-role="time"]');
  if (!Number.isFinite(at)) { el2.textContent = ''; return; }
  el2.textContent = t('coord.alert.at', { time: fmtClock(at, true), ago: fmtDuration(Date.now() - at) });
}

function renderAlertTimes() {
  for (const item of state.alertEls.values()) updateAlertTime(item);
}

async function ackAlert(id, btn) {
  btn.disabled = true;
  const r = await api(`/api/alerts/${encodeURIComponent(id)}/ack`, { method: 'POST' });
  btn.disabled = false;
  if (r.status === 401) { showLogin('login.expired'); return; }
  if (!r.ok) { toast(t('coord.ackFailed', { status: r.status || '—' }), 'error'); return; }
  state.ackedLocally.set(id, (state.me && state.me.name) || '');
  if (state.snapshot) render(state.snapshot);
}

// ---------------------------------------------------------------- overloaded mode

function renderOverloaded(on) {
  E.overloadedState.textContent = t(on ? 'coord.overloadedOn' : 'coord.overloadedOff');
  E.overloadedState.classList.toggle('hot', on);
  E.overloadedToggle.textContent = t(on ? 'coord.overloadedTurnOff' : 'coord.overloadedTurnOn');
  E.overloadedToggle.setAttribute('aria-pressed', on ? 'true' : 'false');
  E.overloadedToggle.dataset.state = on ? 'on' : 'off';
  if (!E.overloadedToggle.dataset.busy) E.overloadedToggle.disabled = false;
}

async function toggleOverloaded() {
  if (!state.snapshot) return;
  const on = state.snapshot.overloaded !== true;
  if (!window.confirm(t(on ? 'coord.overloadedConfirmOn' : 'coord.overloadedConfirmOff'))) return;
  const btn = E.overloadedToggle;
  btn.disabled = true;
  btn.dataset.busy = '1';
  const r = await api('/api/service/overloaded', { method: 'POST', body: { on } });
  delete btn.dataset.busy;
  btn.disabled = false;
  if (r.status === 401) { showLogin('login.expired'); return; }
  if (!r.ok) { toast(t('coord.overloadedFailed', { status: r.status || '—' }), 'error'); return; }
  state.snapshot.overloaded = on;
  render(state.snapshot);
}

E.overloadedToggle.addEventListener('click', toggleOverloaded);

function updateTitle() {
  const base = `${t('app.name')} ${t('coord.subtitle')}`;
  const n = unackedCount();
  const em = unackedCount('emergency');
  const prefix = em > 0 ? `${t('coord.titleEmergency', { n: em })} ` : '';
  document.title = n > 0 ? `${prefix}(!${n}) ${base}` : base;
}

// ---------------------------------------------------------------- open emergencies (snapshot)

function categoriesText(list) {
  return (Array.isArray(list) ? list : []).map((c) => flagCategoryName(c)).join('、');
}

function hasValue(v) { return v !== null && v !== undefined && v !== ''; }

/** Cells whose data-since holds a time get "hh:mm (elapsed)" or the elapsed time, every second. */
function updateSince(root) {
  const now = Date.now();
  for (const node of root.querySelectorAll('[data-since]')) {
    const at = Number(node.dataset.since);
    if (!Number.isFinite(at)) { node.textContent = '—'; continue; }
    node.textContent = node.dataset.sinceFormat === 'clock'
      ? t('coord.since', { time: fmtClock(at), ago: fmtDuration(now - at) })
      : fmtDuration(now - at);
  }
}

function renderEmergencies(list) {
  const items = list.filter((e) => e && e.conversation);
  items.sort((a, b) => (hasValue(a.acknowledged_by) - hasValue(b.acknowledged_by)) || (toMs(a.raised_at) - toMs(b.raised_at)));
  const keep = new Set();
  for (const e of items) {
    keep.add(e.conversation);
    let row = state.emergencyRows.get(e.conversation);
    if (!row) {
      row = el('tr', { data: { testid: 'emergency-row', conversation: e.conversation } },
        el('th', { scope: 'row', data: { role: 'label' } }),
        el('td', { data: { role: 'operator' } }),
        el('td', { class: 'emergency-cats', data: { role: 'categories' } }),
        el('td', { class: 'timer', data: { role: 'since', sinceFormat: 'clock' } }),
        el('td', { data: { role: 'acked' } }));
      state.emergencyRows.set(e.conversation, row);
    }
    const acked = hasValue(e.acknowledged_by);
    row.dataset.acknowledged = acked ? 'true' : 'false';
    row.querySelector('[data-role="label"]').textContent = convLabel(e.conversation);
    row.querySelector('[data-role="operator"]').textContent = e.operator || '—';
    row.querySelector('[data-role="categories"]').textContent = categoriesText(e.categories);
    row.querySelector('[data-role="since"]').dataset.since = String(toMs(e.raised_at));
    const ackedCell = row.querySelector('[data-role="acked"]');
    if (acked) setText(ackedCell, 'coord.ackedShort', { name: String(e.acknowledged_by) });
    else setText(ackedCell, 'coord.notAcked');
    ackedCell.classList.toggle('hot', !acked);
  }
  for (const [id, row] of state.emergencyRows) {
    if (!keep.has(id)) { row.remove(); state.emergencyRows.delete(id); }
  }
  placeInOrder(E.emergencies, items.map((e) => state.emergencyRows.get(e.conversation)));
  const sig = items.map((e) => `${e.conversation}:${categoriesText(e.categories)}`).sort().join('|');
  if (state.emergencySig !== null && state.emergencySig !== sig && !state.stopped) loadEscalations();
  state.emergencySig = sig;
  E.emergenciesEmpty.hidden = items.length > 0;
  E.emergencies.closest('table').hidden = items.length === 0;
  updateSince(E.emergencies);
  renderEmergencySectionState();
}

function renderEmergencySectionState() {
  const unacked = unackedCount('emergency');
  const open = state.emergencyRows.size;
  E.emergencySection.dataset.state = unacked > 0 ? 'alert' : (open > 0 ? 'open' : 'none');
}

// ---------------------------------------------------------------- panels (polled)

/**
 * Emergency flagging is off on this gateway (no escalation key, the first-run default; the
 * server says so in /api/me). Then there are no records or audit trail to load, and asking for
 * them would only fail again and again: the page says flagging is off and how an admin turns it
 * on, instead of an error that promises a retry.
 */
function flaggingOff() {
  return !!state.me && state.me.flagging === false;
}

function renderFlagging() {
  const off = flaggingOff();
  E.flaggingOff.hidden = !off;
  E.escNote.hidden = off;
  E.escTable.hidden = off;
  E.escRefresh.hidden = off;
  if (off) { showStatus(E.escStatus, null); E.escEmpty.hidden = true; }
}

function startPanels() {
  stopPanels();
  state.auditHidden = flaggingOff();
  E.auditSection.hidden = true;
  renderFlagging();
  loadConversations();
  loadEscalations();
  state.timers.push(setInterval(loadConversations, CONVERSATIONS_POLL_MS));
  // Every listing of escalation records is written to the audit trail, so the list is not
  // polled: it is loaded at start, when the set of open emergencies changes, after a flag or
  // clear from this page, and by the refresh button.
  // The audit trail is for admins; a coordinator would get 403, so only admins ask.
  if (state.me && state.me.role === 'admin' && !flaggingOff()) {
    loadAudit();
    state.timers.push(setInterval(loadAudit, AUDIT_POLL_MS));
  }
}

function stopPanels() {
  for (const id of state.timers) clearInterval(id);
  state.timers = [];
  closeDialog(E.flagDialog);
  closeDialog(E.clearDialog);
  closeRecord();
}

function showStatus(node, key, vars) {
  if (!key) { node.hidden = true; node.textContent = ''; delete node.dataset.i18n; return; }
  setText(node, key, vars);
  node.hidden = false;
}

/** Readable text for a failed HTTP call (status, and a known code / error field in the body). */
function httpErrorText(r) {
  if (r.network) return t('login.network');
  const code = r.data && typeof r.data === 'object' ? (r.data.code || r.data.error) : null;
  const base = has(`coord.err.${r.status}`) ? t(`coord.err.${r.status}`) : t('error.http', { status: r.status || '—' });
  return code && has(`coord.err.code.${code}`) ? `${base} ${t(`coord.err.code.${code}`)}` : base;
}

// ---------------------------------------------------------------- conversations

async function loadConversations() {
  if (state.stopped || state.convLoading) return;
  state.convLoading = true;
  const r = await api('/api/conversations');
  state.convLoading = false;
  if (state.stopped) return;
  if (r.status === 401) { showLogin('login.expired'); return; }
  if (!r.ok || !Array.isArray(r.data)) { showStatus(E.convsStatus, 'coord.loadError', { status: r.network ? '—' : r.status }); return; }
  showStatus(E.convsStatus, null);
  state.convs = r.data.filter((c) => c && typeof c.id === 'string');
  E.convsUpdated.textContent = t('coord.updated', { time: fmtClock(Date.now(), true) });
  renderConversations();
}

function emergencyOpen(c) { return !!(c && c.emergency && typeof c.emergency === 'object' && c.emergency.open === true); }

function renderConversations() {
  const list = [...state.convs];
  // Open emergencies first, then the longest running.
  list.sort((a, b) => (emergencyOpen(b) - emergencyOpen(a)) || (toMs(a.started_at) - toMs(b.started_at)));
  const keep = new Set();
  for (const c of list) {
    keep.add(c.id);
    let row = state.convRows.get(c.id);
    if (!row) { row = buildConvRow(c.id); state.convRows.set(c.id, row); }
    updateConvRow(row, c);
  }
  for (const [id, row] of state.convRows) {
    if (!keep.has(id)) { row.remove(); state.convRows.delete(id); }
  }
  placeInOrder(E.convRows, list.map((c) => state.convRows.get(c.id)));
  E.convsEmpty.hidden = list.length > 0;
  updateSince(E.convRows);
}

function buildConvRow(id) {
  const flagBtn = el('button', { type: 'button', class: 'btn btn-small btn-emergency', data: { testid: 'coord-flag' } });
  const clearBtn = el('button', { type: 'button', class: 'btn btn-small', data: { testid: 'coord-clear' }, i18n: ['coord.clear'], hidden: true });
  flagBtn.addEventListener('click', () => openFlag(id));
  clearBtn.addEventListener('click', () => openClear(id));
  return el('tr', { data: { testid: 'conversation-row', conversation: id } },
    el('th', { scope: 'row', data: { role: 'label' } }),
    el('td', { data: { role: 'state' } }),
    el('td', { data: { role: 'channel' } }),
    el('td', { data: { role: 'operator' } }),
    el('td', { class: 'timer', data: { role: 'since' } }),
    el('td', { data: { role: 'emergency' } }),
    el('td', { class: 'row-actions' }, flagBtn, clearBtn));
}

function updateConvRow(row, c) {
  const open = emergencyOpen(c);
  row.dataset.state = String(c.state || '');
  row.dataset.emergency = open ? 'true' : 'false';
  row.querySelector('[data-role="label"]').textContent = convLabel(c.id);
  const st = String(c.state || '');
  row.querySelector('[data-role="state"]').textContent = has(`coord.state.${st}`) ? t(`coord.state.${st}`) : (st || '—');
  row.querySelector('[data-role="channel"]').textContent =
    [channelName(c.channel), c.language ? langName(c.language) : null].filter(Boolean).join(' · ');
  row.querySelector('[data-role="operator"]').textContent = c.operator || '—';
  row.querySelector('[data-role="since"]').dataset.since = String(toMs(c.started_at));
  const emCell = row.querySelector('[data-role="emergency"]');
  emCell.classList.toggle('hot', open);
  const em = c.emergency && typeof c.emergency === 'object' ? c.emergency : null;
  if (open) {
    // acknowledged_by may be absent from this list: say "not acknowledged" only when it is null.
    const notAcked = 'acknowledged_by' in em && !hasValue(em.acknowledged_by);
    emCell.textContent = `${categoriesText(em.categories)}${notAcked ? ` ${t('coord.notAckedParen')}` : ''}`;
  } else if (em) setText(emCell, 'coord.emergency.cleared');
  else emCell.textContent = '—';
  const flagBtn = row.querySelector('[data-testid="coord-flag"]');
  setText(flagBtn, open ? 'coord.flagAdd' : 'coord.flag');
  flagBtn.hidden = flaggingOff();
  row.querySelector('[data-testid="coord-clear"]').hidden = !open;
}

// ---------------------------------------------------------------- raise / clear a flag

function openDialog(d) {
  if (d.open) return;
  if (typeof d.showModal === 'function') d.showModal(); else d.setAttribute('open', '');
}
function closeDialog(d) {
  if (!d.open) return;
  if (typeof d.close === 'function') d.close(); else d.removeAttribute('open');
}

function renderFlagCategories() {
  const current = E.flagCategory.value;
  const first = E.flagCategory.options[0];
  E.flagCategory.replaceChildren(first);
  for (const c of EMERGENCY_CATEGORIES) E.flagCategory.append(el('option', { value: c, text: flagCategoryName(c) }));
  if (EMERGENCY_CATEGORIES.includes(current)) E.flagCategory.value = current;
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
}

function formError(node, key, vars, text) {
  if (!key && !text) { node.hidden = true; node.textContent = ''; delete node.dataset.i18n; return; }
  if (key) setText(node, key, vars); else { node.textContent = text; delete node.dataset.i18n; }
  node.hidden = false;
}

function setInvalid(node, invalid) {
  if (invalid) node.setAttribute('aria-invalid', 'true'); else node.removeAttribute('aria-invalid');
}

function updateFlagCount() {
  const n = charCount(E.flagReason.value.trim());
  E.flagCount.textContent = `${n} / ${MAX_REASON}`;
  E.flagCount.classList.toggle('over', n > MAX_REASON);
}

function openFlag(id) {
  const c = state.convs.find((x) => x.id === id);
  state.flag = { conversation: id, busy: false };
  setText(E.flagHeading, emergencyOpen(c) ? 'flag.titleAdd' : 'flag.title');
  setText(E.flagFor, 'flag.for', { label: convLabel(id) });
  renderFlagCategories();
  E.flagCategory.value = '';
  E.flagReason.value = '';
  setInvalid(E.flagCategory, false);
  setInvalid(E.flagReason, false);
  updateFlagCount();
  formError(E.flagError, null);
  flagStep('edit');
  openDialog(E.flagDialog);
  E.flagCategory.focus();
}

function submitFlagForm(e) {
  e.preventDefault();
  if (!state.flag) return;
  if (!E.flagStepConfirm.hidden) { confirmFlag(); return; }
  const category = E.flagCategory.value;
  const reason = E.flagReason.value.trim();
  setInvalid(E.flagCategory, !category);
  if (!category) { formError(E.flagError, 'flag.needCategory'); E.flagCategory.focus(); return; }
  const n = charCount(reason);
  setInvalid(E.flagReason, n === 0 || n > MAX_REASON);
  if (n === 0) { formError(E.flagError, 'flag.needReason'); E.flagReason.focus(); return; }
  if (n > MAX_REASON) { formError(E.flagError, 'flag.reasonTooLong', { max: MAX_REASON }); E.flagReason.focus(); return; }
  formError(E.flagError, null);
  E.flagSummaryCategory.textContent = flagCategoryName(category);
  E.flagSummaryReason.textContent = reason;
  flagStep('confirm');
  E.flagConfirm.focus();
}

async function confirmFlag() {
  const f = state.flag;
  if (!f || f.busy) return;
  const category = E.flagCategory.value;
  const reason = E.flagReason.value.trim();
  if (!category || !reason) { flagStep('edit'); return; }
  f.busy = true;
  E.flagConfirm.disabled = true;
  E.flagBack.disabled = true;
  formError(E.flagError, null);
  const r = await api(`/api/conversations/${encodeURIComponent(f.conversation)}/flag`, { method: 'POST', body: { category, reason } });
  f.busy = false;
  if (r.status === 401) { showLogin('login.expired'); return; }
  if (!r.ok) {
    const text = t('coord.actionFailed', { detail: httpErrorText(r) });
    if (state.flag === f && E.flagDialog.open) {
      E.flagConfirm.disabled = false;
      E.flagBack.disabled = false;
      formError(E.flagError, null, null, text);
    } else toast(text, 'error', { timeout: 0 });
    return;
  }
  if (state.flag === f) { state.flag = null; closeDialog(E.flagDialog); }
  toast(t('coord.flagDone', { label: convLabel(f.conversation) }), 'success');
  loadConversations();
  loadEscalations();
}

function openClear(id) {
  state.clear = { conversation: id, busy: false };
  setText(E.clearFor, 'coord.clearFor', { label: convLabel(id) });
  E.clearReason.value = '';
  setInvalid(E.clearReason, false);
  formError(E.clearError, null);
  E.clearSubmit.disabled = false;
  openDialog(E.clearDialog);
  E.clearReason.focus();
}

async function submitClear(e) {
  e.preventDefault();
  const c = state.clear;
  if (!c || c.busy) return;
  const reason = E.clearReason.value.trim();
  const n = charCount(reason);
  setInvalid(E.clearReason, n === 0 || n > MAX_REASON);
  if (n === 0) { formError(E.clearError, 'coord.clearNeedReason'); E.clearReason.focus(); return; }
  if (n > MAX_REASON) { formError(E.clearError, 'flag.reasonTooLong', { max: MAX_REASON }); E.clearReason.focus(); return; }
  c.busy = true;
  E.clearSubmit.disabled = true;
  formError(E.clearError, null);
  const r = await api(`/api/conversations/${encodeURIComponent(c.conversation)}/flag/clear`, { method: 'POST', body: { reason } });
  c.busy = false;
  E.clearSubmit.disabled = false;
  if (r.status === 401) { showLogin('login.expired'); return; }
  if (!r.ok) {
    const text = t('coord.actionFailed', { detail: httpErrorText(r) });
    if (state.clear === c && E.clearDialog.open) formError(E.clearError, null, null, text);
    else toast(text, 'error', { timeout: 0 });
    return;
  }
  if (state.clear === c) { state.clear = null; closeDialog(E.clearDialog); }
  toast(t('coord.cleared', { label: convLabel(c.conversation) }), 'success');
  loadConversations();
  loadEscalations();
}

// ---------------------------------------------------------------- escalation records

async function loadEscalations() {
  if (state.stopped || state.escLoading || flaggingOff()) return;
  state.escLoading = true;
  const r = await api('/api/escalations');
  state.escLoading = false;
  if (state.stopped) return;
  if (r.status === 401) { showLogin('login.expired'); return; }
  if (!r.ok || !Array.isArray(r.data)) { showStatus(E.escStatus, 'coord.loadError', { status: r.network ? '—' : r.status }); return; }
  showStatus(E.escStatus, null);
  state.escalations = r.data.filter((x) => x && hasValue(x.id));
  E.escUpdated.textContent = t('coord.updated', { time: fmtClock(Date.now(), true) });
  renderEscalations();
}

function renderEscalations() {
  const list = [...state.escalations];
  list.sort((a, b) => (b.open === true) - (a.open === true) || (toMs(b.created_at) - toMs(a.created_at)));
  const keep = new Set();
  for (const x of list) {
    const id = String(x.id);
    keep.add(id);
    let row = state.escRows.get(id);
    if (!row) {
      const view = el('button', { type: 'button', class: 'btn btn-small', data: { testid: 'escalation-view' }, i18n: ['coord.view'] });
      view.addEventListener('click', () => viewRecord(id));
      row = el('tr', { data: { testid: 'escalation-row', record: id } },
        el('th', { scope: 'row', data: { role: 'label' } }),
        el('td', { data: { role: 'created' } }),
        el('td', { data: { role: 'expires' } }),
        el('td', { data: { role: 'categories' } }),
        el('td', { data: { role: 'open' } }),
        el('td', { data: { role: 'delivered' } }),
        el('td', { class: 'row-actions' }, view));
      state.escRows.set(id, row);
    }
    row.dataset.conversation = String(x.conversation ?? '');
    row.dataset.open = x.open === true ? 'true' : 'false';
    row.querySelector('[data-role="label"]').textContent = x.conversation ? convLabel(String(x.conversation)) : '—';
    row.querySelector('[data-role="created"]').textContent = fmtDateTime(toMs(x.created_at)) || '—';
    row.querySelector('[data-role="expires"]').textContent = fmtDateTime(toMs(x.expires_at)) || '—';
    row.querySelector('[data-role="categories"]').textContent = categoriesText(x.categories) || '—';
    // `open`: the conversation still lives and its record is still being extended.
    const openCell = row.querySelector('[data-role="open"]');
    setText(openCell, x.open === true ? 'coord.rec.open' : 'coord.rec.closed');
    const delivered = row.querySelector('[data-role="delivered"]');
    if (x.delivery === 'none') { delete delivered.dataset.i18n; delivered.textContent = '—'; }
    else if (x.delivered === true) setText(delivered, 'coord.rec.delivered');
    else if (x.delivered === false) setText(delivered, 'coord.rec.notDelivered');
    else { delete delivered.dataset.i18n; delivered.textContent = hasValue(x.delivered) ? String(x.delivered) : '—'; }
  }
  for (const [id, row] of state.escRows) {
    if (!keep.has(id)) { row.remove(); state.escRows.delete(id); }
  }
  placeInOrder(E.escRows, list.map((x) => state.escRows.get(String(x.id))));
  E.escEmpty.hidden = list.length > 0;
}

function fromName(from) {
  const f = String(from ?? '');
  return has(`rec.from.${f}`) ? t(`rec.from.${f}`) : (f || '?');
}

/** An action's detail: the flagged category, the wrap-up category at close, or free text. */
function actionDetail(a) {
  if (!hasValue(a.detail)) return null;
  const d = typeof a.detail === 'string' ? a.detail : JSON.stringify(a.detail);
  if ((a.action === 'flag_raised' || a.action === 'flag_added') && EMERGENCY_CATEGORIES.includes(d)) return flagCategoryName(d);
  if (a.action === 'closed') return categoryName(d);
  return d;
}

function actionName(a) {
  const k = String(a ?? '');
  return has(`rec.action.${k}`) ? t(`rec.action.${k}`) : (k || '?');
}

function clearRecordBody() {
  E.recordBody.hidden = true;
  for (const node of [E.recordConversation, E.recordChannel, E.recordChannelRef, E.recordCreated, E.recordExpires, E.recordState]) node.textContent = '';
  E.recordFlags.replaceChildren();
  E.recordActions.replaceChildren();
  E.recordTranscript.replaceChildren();
}

/** Opens one record. The server records the read in the audit trail; the dialog says so first. */
async function viewRecord(id) {
  state.recordId = id;
  clearRecordBody();
  setText(E.recordAudit, 'rec.auditNotice', { name: (state.me && state.me.name) || '?', time: fmtDateTime(Date.now()) });
  setText(E.recordStatus, 'rec.loading');
  E.recordStatus.hidden = false;
  E.recordDialog.dataset.record = id;
  openDialog(E.recordDialog);
  E.recordClose.focus();
  const r = await api(`/api/escalations/${encodeURIComponent(id)}`);
  if (state.recordId !== id) return;
  if (r.status === 401) { closeRecord(); showLogin('login.expired'); return; }
  if (!r.ok || !r.data || typeof r.data !== 'object') {
    E.recordStatus.textContent = t('rec.error', { detail: httpErrorText(r) });
    delete E.recordStatus.dataset.i18n;
    return;
  }
  renderRecord(r.data);
  if (state.me && state.me.role === 'admin') loadAudit();
}

function renderRecord(rec) {
  E.recordStatus.hidden = true;
  E.recordBody.hidden = false;
  E.recordConversation.textContent = rec.conversation
    ? `${convLabel(String(rec.conversation))} (${rec.conversation})` : '—';
  E.recordChannel.textContent = rec.channel ? channelName(rec.channel) : '—';
  if (hasValue(rec.channel_ref)) {
    E.recordChannelRef.replaceChildren(
      el('code', { class: 'channel-ref', text: String(rec.channel_ref) }),
      el('span', { class: 'muted small block', i18n: ['rec.channelRefHint'] }));
  } else {
    E.recordChannelRef.replaceChildren(el('span', { class: 'muted', i18n: ['rec.channelRefNone'] }));
  }
  E.recordCreated.textContent = fmtDateTime(toMs(rec.created_at)) || '—';
  E.recordExpires.textContent = fmtDateTime(toMs(rec.expires_at)) || '—';
  const stateBits = [t(rec.closed === true ? 'rec.closed' : 'rec.live')];
  if (hasValue(rec.delivered_at)) stateBits.push(t('rec.deliveredAt', { time: fmtDateTime(toMs(rec.delivered_at)) }));
  E.recordState.textContent = stateBits.join(' / ');

  const flags = Array.isArray(rec.flags) ? rec.flags : [];
  E.recordFlags.replaceChildren(...(flags.length ? flags.map((f) => el('li', { data: { testid: 'record-flag', category: String(f.category ?? '') } },
    el('strong', { class: 'chip chip-emergency', text: flagCategoryName(f.category) }),
    el('span', { class: 'record-reason', text: String(f.reason ?? '') }),
    el('span', { class: 'muted small', text: t('rec.by', { name: f.by || '?', time: fmtDateTime(toMs(f.at)) }) })))
    : [el('li', { class: 'muted', i18n: ['rec.none'] })]));

  const actions = Array.isArray(rec.actions) ? rec.actions : [];
  E.recordActions.replaceChildren(...(actions.length ? actions.map((a) => el('li', { data: { testid: 'record-action', action: String(a.action ?? '') } },
    el('time', { class: 'muted small', text: fmtDateTime(toMs(a.at)) }),
    el('span', { class: 'record-actor', text: String(a.actor ?? '?') }),
    el('strong', { text: actionName(a.action) }),
    hasValue(a.detail) ? el('span', { class: 'record-detail', text: actionDetail(a) }) : null))
    : [el('li', { class: 'muted', i18n: ['rec.none'] })]));

  const transcript = (Array.isArray(rec.transcript) ? rec.transcript : []).slice()
    .sort((a, b) => (Number(a.seq) || 0) - (Number(b.seq) || 0));
  E.recordTranscript.replaceChildren(...(transcript.length ? transcript.map((m) => {
    const from = String(m.from ?? '');
    return el('li', { class: `record-entry record-from-${from === 'visitor' ? 'visitor' : 'other'}`, data: { testid: 'transcript-entry', from, seq: String(m.seq ?? '') } },
      el('div', { class: 'record-entry-meta small' },
        el('span', { class: 'msg-who', text: m.operator ? `${fromName(from)}（${m.operator}）` : fromName(from) }),
        el('time', { class: 'muted', text: fmtDateTime(toMs(m.at)) })),
      el('div', { class: 'record-text', text: String(m.text ?? '') }));
  }) : [el('li', { class: 'muted', i18n: ['rec.none'] })]));
}

function closeRecord() {
  // The decrypted content does not stay in the page once the dialog is closed.
  state.recordId = null;
  delete E.recordDialog.dataset.record;
  clearRecordBody();
  closeDialog(E.recordDialog);
}

// ---------------------------------------------------------------- audit trail (admins)

async function loadAudit() {
  if (state.stopped || state.auditLoading || state.auditHidden) return;
  state.auditLoading = true;
  const r = await api('/api/audit');
  state.auditLoading = false;
  if (state.stopped) return;
  if (r.status === 401) { showLogin('login.expired'); return; }
  if (r.status === 403) { state.auditHidden = true; E.auditSection.hidden = true; return; }
  E.auditSection.hidden = false;
  if (!r.ok || !Array.isArray(r.data)) { showStatus(E.auditStatus, 'coord.loadError', { status: r.network ? '—' : r.status }); return; }
  showStatus(E.auditStatus, null);
  state.audit = r.data.filter((x) => x && typeof x === 'object');
  E.auditUpdated.textContent = t('coord.updated', { time: fmtClock(Date.now(), true) });
  renderAudit();
}

/**
 * The actor of an audit entry: the name as shown, and under it the account id, which is what
 * identifies the person (two volunteers may share a display name). The system has no account.
 */
function auditActor(a) {
  const id = hasValue(a.actor_id) ? String(a.actor_id) : null;
  return el('td', { data: { actorId: id ?? '' } },
    el('span', { text: String(a.actor ?? '—') }),
    id ? el('br') : null,
    id ? el('span', { class: 'mono small muted', text: id }) : null);
}

function renderAudit() {
  const list = [...state.audit].sort((a, b) => toMs(b.at) - toMs(a.at)).slice(0, 500);
  E.auditRows.replaceChildren(...list.map((a) => el('tr', { data: { testid: 'audit-row', action: String(a.action ?? ''), record: String(a.record ?? '') } },
    el('td', { text: fmtDateTime(toMs(a.at)) || '—' }),
    auditActor(a),
    el('td', { text: actionName(a.action) }),
    el('td', { class: 'mono small', text: hasValue(a.record) ? String(a.record) : '—' }))));
  E.auditEmpty.hidden = list.length > 0;
}

// ---------------------------------------------------------------- wiring

function wirePanels() {
  E.flagForm.addEventListener('submit', submitFlagForm);
  E.flagConfirm.addEventListener('click', confirmFlag);
  E.flagBack.addEventListener('click', () => { if (state.flag && state.flag.busy) return; formError(E.flagError, null); flagStep('edit'); E.flagReason.focus(); });
  E.flagCancel.addEventListener('click', () => closeDialog(E.flagDialog));
  E.flagDialog.addEventListener('close', () => { if (state.flag && !state.flag.busy) state.flag = null; });
  E.flagReason.addEventListener('input', () => { updateFlagCount(); setInvalid(E.flagReason, false); });
  E.flagCategory.addEventListener('change', () => setInvalid(E.flagCategory, false));
  E.clearForm.addEventListener('submit', submitClear);
  E.clearCancel.addEventListener('click', () => closeDialog(E.clearDialog));
  E.clearDialog.addEventListener('close', () => { if (state.clear && !state.clear.busy) state.clear = null; });
  E.clearReason.addEventListener('input', () => setInvalid(E.clearReason, false));
  E.recordClose.addEventListener('click', closeRecord);
  E.recordDialog.addEventListener('close', () => { if (state.recordId) closeRecord(); });
  E.escRefresh.addEventListener('click', loadEscalations);
  renderFlagCategories();
}
