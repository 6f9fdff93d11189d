// Tsunagu coordinator view: live queue and staffing numbers from
// GET /api/dashboard/stream (Server-Sent Events, event "stats"), help-request alerts.

import { t, setText, initI18n, onLangChange } from '/console/i18n.js';
import { api, getMe, logout as apiLogout, bindLoginForm, showLoginError } from '/console/auth.js';
import { tone, installAudioUnlock, bindSoundToggle } from '/console/sound.js';
import { $, el, byTestId, convLabel, fmtMmSs, fmtClock, fmtDuration, toMs, channelName, toast } from '/console/util.js';

const ALLOWED_ROLES = ['coordinator', 'admin'];
const ALERT_REMINDER_MS = 20000;
const STALE_MS = 5000;

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
};

initI18n(E.lang);
installAudioUnlock();
const renderSound = bindSoundToggle(E.sound, t);
onLangChange(() => {
  renderSound(); if (state.snapshot) render(state.snapshot); if (state.me) E.meName.textContent = t('signedInAs', { name: state.me.name || '' }); updateTitle(); });
bindLoginForm(E.loginForm, (me) => start(me));
E.logout.addEventListener('click', async () => {
  stopStream();
  await apiLogout();
  showLogin(null);
});
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
  const unacked = unackedCount();
  if (unacked > 0 && Date.now() - state.lastAlertTone > ALERT_REMINDER_MS) {
    tone('alert');
    state.lastAlertTone = Date.now();
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

  E.updated.textContent = t('coord.updated', { time: fmtClock(Date.now(), true) });
  renderAlerts(Array.isArray(s.alerts) ? s.alerts : []);
  updateTitle();
}

function isAcked(a) {
  return (a.acknowledged_by !== null && a.acknowledged_by !== undefined) || state.ackedLocally.has(a.id);
}

function unackedCount() {
  if (!state.snapshot || !Array.isArray(state.snapshot.alerts)) return 0;
  return state.snapshot.alerts.filter((a) => a && a.id && !isAcked(a)).length;
}

function renderAlerts(alerts) {
  const list = alerts.filter((a) => a && a.id);
  // Unacknowledged first, newest first.
  list.sort((a, b) => (isAcked(a) - isAcked(b)) || (toMs(b.at) - toMs(a.at)));
  let newUnacked = false;
  const keep = new Set();
  for (const a of list) {
    keep.add(a.id);
    if (!state.seenAlerts.has(a.id)) {
      state.seenAlerts.add(a.id);
      if (!isAcked(a)) newUnacked = true;
    }
    if (a.acknowledged_by) state.ackedLocally.delete(a.id);
    let item = state.alertEls.get(a.id);
    if (!item) { item = buildAlert(a); state.alertEls.set(a.id, item); }
    updateAlert(item, a);
  }
  for (const [id, item] of state.alertEls) {
    if (!keep.has(id)) { item.remove(); state.alertEls.delete(id); }
  }
  // Reorder only when the order changed (moving nodes would re-announce them and drop focus).
  const wanted = list.map((a) => state.alertEls.get(a.id));
  const current = Array.from(E.alerts.children);
  if (wanted.length !== current.length || wanted.some((node, i) => node !== current[i])) {
    const focused = document.activeElement;
    E.alerts.replaceChildren(...wanted);
    if (focused && E.alerts.contains(focused)) focused.focus();
  }
  E.alertsEmpty.hidden = list.length > 0;
  const unacked = list.filter((a) => !isAcked(a)).length;
  E.alertsCount.hidden = unacked === 0;
  E.alertsCount.textContent = String(unacked);
  if (newUnacked) { tone('alert'); state.lastAlertTone = Date.now(); }
}

function buildAlert(a) {
  const item = el('li', { class: 'alert-item', data: { testid: 'alert', alertId: a.id, acknowledged: 'false' } });
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
  setText(item.querySelector('[data-role="title"]'), `coord.alert.${kind}`, { operator: a.operator || '?', kind: a.kind || '?' });
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

function updateTitle() {
  const base = `${t('app.name')} ${t('coord.subtitle')}`;
  const n = unackedCount();
  document.title = n > 0 ? `(!${n}) ${base}` : base;
}
