// Tsunagu coordinator view: live queue and staffing numbers from
// GET /api/dashboard/stream (Server-Sent Events, event "stats"), help-request and emergency
// alerts, open emergencies, live conversations (GET /api/conversations, without content) with
// raise / clear flag, escalation records (every read is audited) and, for admins, the audit trail.
//
// This module is the page: login, the three views (login, forbidden, dashboard), starting and
// stopping the parts, the one-second tick and language changes. Each part is a module under
// coordinator/ that owns its own state and elements:
//   session.js        who is signed in, whether the page is live, "session expired"
//   stream.js         the SSE stream and its reconnects
//   stats.js          the numbers, banners and overloaded switch (owns the latest snapshot)
//   alerts.js         alerts, reminders, open emergencies, the page title
//   notify.js         browser notifications of new alerts and conditions, and their toggle
//   conversations.js  live conversations, raise (shared flag dialog) and clear flag
//   records.js        escalation records, the record dialog, the audit trail
//   oncall.js         who is on call now, alerts paged and their acknowledgement, the rota editor
//   view.js           rendering helpers the panels share

import { t, initI18n, onLangChange } from '/console/i18n.js';
import { api, getMe, logout as apiLogout, bindLoginForm, resetLoginForm } from '/console/auth.js';
import { installAudioUnlock, bindSoundToggle } from '/console/sound.js';
import { bindNotifyToggle } from '/console/coordinator/notify.js';
import { $, byIds } from '/console/util.js';
import { user, setUser, isAllowed, setLive, whenExpired } from '/console/coordinator/session.js';
import { initStream, restartStream, stopStream, setStream, gotStats, checkStale } from '/console/coordinator/stream.js';
import { onStats, rerender } from '/console/coordinator/stats.js';
import { whenAcked, updateTitle, tickAlerts } from '/console/coordinator/alerts.js';
import {
  loadConversations, refreshConversations, closeConversationDialogs, tickConversations,
} from '/console/coordinator/conversations.js';
import { startRecords, stopRecords, renderEscalations, renderAudit } from '/console/coordinator/records.js';
import { startOncall, stopOncall, renderOncall } from '/console/coordinator/oncall.js';

const CONVERSATIONS_POLL_MS = 5000;

const E = {
  ...byIds('login-view', 'login-form', 'login-notice', 'forbidden-view', 'dash-view', 'status-bar',
    'me-name', 'logout'),
  sound: $('#sound-toggle'),
  notify: $('#notify-toggle'),
  lang: $('#lang-switch'),
};

let convTimer = null;   // polls the live conversations while the page is live

initI18n(E.lang);
installAudioUnlock();
const renderSound = bindSoundToggle(E.sound, t);
const renderNotify = bindNotifyToggle(E.notify);
onLangChange(() => {
  renderSound();
  renderNotify();
  rerender();
  const me = user();
  if (me) E.meName.textContent = t('signedInAs', { name: me.name || '' });
  refreshConversations();
  renderEscalations();
  renderAudit();
  renderOncall();
  updateTitle();
});
bindLoginForm(E.loginForm, (me) => start(me));
E.logout.addEventListener('click', async () => {
  stop();
  await apiLogout();
  showLogin(null);
});
initStream({ onStats, onForbidden: showForbidden });
whenExpired(showLogin);
whenAcked(rerender);
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
  stop();
  setUser(null);
  showView('login');
  resetLoginForm(E.loginForm, E.loginNotice, noticeKey, { userFirst: true });
}

function showForbidden() {
  stop();
  showView('forbidden');
  setStream('offline');
}

async function start(me) {
  setUser(me);
  E.meName.textContent = t('signedInAs', { name: me.name || '' });
  if (!isAllowed(me)) { showForbidden(); return; }
  showView('dash');
  // One snapshot first: it also tells us plainly about 401 / 403.
  const r = await api('/api/dashboard');
  if (r.status === 401) { showLogin('login.expired'); return; }
  if (r.status === 403) { showForbidden(); return; }
  if (r.ok && r.data && typeof r.data === 'object') gotStats(r.data);
  setLive(true);
  restartStream();
  startPanels();
}

/** Stops the stream and the panels: nothing loads until the next start. */
function stop() {
  setLive(false);
  stopStream();
  stopPanels();
}

function startPanels() {
  stopPanels();
  startRecords();
  startOncall();
  loadConversations();
  convTimer = setInterval(loadConversations, CONVERSATIONS_POLL_MS);
}

function stopPanels() {
  clearInterval(convTimer);
  convTimer = null;
  closeConversationDialogs();
  stopRecords();
  stopOncall();
}

function tick() {
  checkStale();
  tickAlerts();
  tickConversations();
}
