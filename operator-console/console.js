// Tsunagu operator console. Plain ES modules, no framework, no build step.
// Protocol: docs/protocol.md ("Operator messages", "Conversation log entries", "HTTP API").
// Nothing about a conversation is written to browser storage: transcripts live in memory only.
//
// This module is the page: login and logout, the frames from the socket handed to the part that
// owns what they change, the one-second tick and language changes. Each part is a module under
// console/ that owns its state and its elements:
//   session.js        who is signed in; "session expired"
//   socket.js         the websocket, reconnects, heartbeat, commands waiting for their ack
//   conversations.js  the conversations held, their tabs, which one is shown, the page title
//   pane.js           the chat pane of the conversation shown, the composer's counter
//   messages.js       log entries, own messages and their outbox, read marks, typing
//   offers.js         offer cards, accept / decline, take next
//   presence.js       presence and load, queue figures, the pause offer
//   actions.js        help, end, wrap-up, transfer
//   emergency.js      the emergency banner and checklist, raising a flag (shared flag dialog)
//   limits.js         the text limits, from welcome.limits
//   tools.js          phrases and the referral directory

import { readLimits } from '/console/console/limits.js';
import { t, initI18n, onLangChange } from '/console/i18n.js';
import { getMe, logout as apiLogout, bindLoginForm, resetLoginForm } from '/console/auth.js';
import { installAudioUnlock, bindSoundToggle } from '/console/sound.js';
import { $, byIds, errorText, toast } from '/console/util.js';
import { user, setUser, whenExpired } from '/console/console/session.js';
import {
  initSocket, startConnection, connectNow, hasSocket, isStopped, stopReconnecting, disconnect, welcome,
  interruptCommands, startPing, setConn, tracked, untrack, tickSocket,
} from '/console/console/socket.js';
import {
  allConvs, currentConv, upsertConv, syncConversations, dropAllConversations, onRemoved, onGone, lastSeqs,
  renderTabs, tickTabs, updateTitle,
} from '/console/console/conversations.js';
import { renderPane, updatePaneTimer, renderTyping } from '/console/console/pane.js';
import {
  onEvent, onTyping, onSendAck, onSendError, markUndelivered, markRead, resendOutbox,
} from '/console/console/messages.js';
import { addOffer, replaceOffers, dropAllOffers, onOfferWithdrawn, renderOfferTimes, repeatOfferTone } from '/console/console/offers.js';
import {
  welcomePresence, holdLoad, onPresence, renderPresence, onQueue, renderQueue, setControlsEnabled, closePause,
} from '/console/console/presence.js';
import { setCategories, renderCategories, renderHelpButton } from '/console/console/actions.js';
import { welcomeEmergency, refreshFlagDialog } from '/console/console/emergency.js';
import { renderPhrases, renderDirectory } from '/console/console/tools.js';

const E = {
  ...byIds('login-view', 'login-form', 'login-notice', 'app-view', 'status-bar', 'me-name',
    'logout'),
  sound: $('#sound-toggle'),
  lang: $('#lang-switch'),
};

initI18n(E.lang);
installAudioUnlock();
const renderSound = bindSoundToggle(E.sound, t);
onLangChange(() => {
  renderSound();
  document.title = `${t('app.name')} ${t('app.subtitle')}`;
  rerenderAll();
});
bindLoginForm(E.loginForm, (me) => startSession(me));
initSocket({
  onFrame: dispatch,
  lastSeqs,
  onDown: () => setControlsEnabled(false),
  onExpired: () => toLogin('login.expired'),
});
whenExpired(toLogin);
E.logout.addEventListener('click', async () => {
  E.logout.disabled = true;
  stopReconnecting();
  await apiLogout();
  E.logout.disabled = false;
  toLogin(null);
});
setInterval(tick, 1000);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') markRead(currentConv());
});
window.addEventListener('online', () => {
  if (!isStopped() && !hasSocket()) connectNow();
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
  resetLoginForm(E.loginForm, E.loginNotice, noticeKey);
}

function startSession(me) {
  setUser(me);
  E.loginView.hidden = true;
  E.appView.hidden = false;
  E.statusBar.hidden = false;
  E.meName.textContent = t('signedInAs', { name: me.name || '' });
  startConnection();
}

/** Back to the login form, dropping everything held in memory. */
function toLogin(noticeKey) {
  disconnect();
  closePause();
  dropAllConversations();
  dropAllOffers();
  renderPane();
  updateTitle();
  showLogin(noticeKey);
}

// ---------------------------------------------------------------- frames

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

function onWelcome(m) {
  welcome(m);
  readLimits(m.limits);
  if (m.operator) {
    setUser({ ...user(), ...m.operator });
    E.meName.textContent = t('signedInAs', { name: user().name || '' });
  }
  if (Array.isArray(m.categories)) setCategories(m.categories.map(String));
  welcomeEmergency(m);
  welcomePresence(m);
  interruptCommands();
  syncConversations(Array.isArray(m.conversations) ? m.conversations : []);
  // Until the next `presence` event, the load is what we hold.
  holdLoad([...allConvs()].filter((c) => c.summary.state === 'active' || c.summary.state === 'wrap_up').length);
  replaceOffers(Array.isArray(m.offers) ? m.offers : []);
  resendOutbox();
  startPing();
  setControlsEnabled(true);
  renderTabs();
  renderPane();
  markRead(currentConv());
}

function onAck(m) {
  const p = tracked(m.id);
  if (!p) return;
  untrack(m.id);
  if (p.type === 'send') { onSendAck(p.conversation, m.id, m.seq); return; }
  if (p.onAck) p.onAck(m);
}

function onError(m) {
  const p = m.id ? tracked(m.id) : null;
  if (p && p.type === 'send') { onSendError(p.conversation, m.id, m.code); return; }
  if (p) {
    untrack(m.id);
    if (p.onError) { p.onError(m); return; }
    toast(errorText(m.code, p.type), 'error');
    return;
  }
  // A message already stored (acknowledged) that a connector could not deliver, e.g. LINE refused it.
  if (m.id && m.code === 'unavailable' && markUndelivered(m.id)) return;
  if (m.code === 'unsupported_version') { setConn('offline', 'conn.version'); }
  toast(errorText(m.code), 'error');
}

// ---------------------------------------------------------------- redraws

function rerenderAll() {
  renderTabs();
  renderPane();
  renderQueue();
  renderPresence();
  renderCategories();
  refreshFlagDialog();
  const me = user();
  if (me) E.meName.textContent = t('signedInAs', { name: me.name || '' });
  renderOfferTimes();
  renderPhrases();
  renderDirectory();
}

function tick() {
  renderQueue();
  renderOfferTimes();
  tickTabs();
  updatePaneTimer();
  renderTyping();
  renderHelpButton();
  tickSocket();
  repeatOfferTone();
}

