/*
 * Tsunagu visitor chat (widget/chat.html), protocol version 1 (docs/protocol.md, "Visitor messages").
 *
 * Native ES modules, no dependencies, no build step. Strict CSP friendly: no eval, no inline
 * handlers, styles only through classes and the CSSOM. This module is the page: it loads the
 * catalogue and the configuration, resumes a stored conversation or shows the welcome screen,
 * and wires the parts together. Each part owns its own state:
 *   dom.js           the page's elements, framed or not, phone or not (read once)
 *   store.js         session storage (the only thing kept, dies with the tab)
 *   config.js        GET /api/widget-config
 *   texts.js         catalogue, t(), language menu, helplines and phone line
 *   socket.js        the websocket, reconnects, heartbeat, connection status
 *   conversation.js  token, seqs, outbox, pending end; the server's frames
 *   messages.js      the message list, own message states, the transcript copy
 *   composer.js      the message box, counter, typing, error line
 *   lifecycle.js     screens, start, end, ended / lost / gone
 *   exit.js          quick exit
 * Shared with the console (/console/): ulid.js, counter.js (charCount), translate.js.
 */

import { $, params, embedded, inIframe } from './dom.js';
import { loadStore, storeFrom } from './store.js';
import { loadConfig } from './config.js';
import { CATALOGUES, DEFAULT_LANG, currentLang, loadCatalogue, applyTexts, onTexts, refreshHelplines } from './texts.js';
import {
  initSocket, renderConn, setConn, afterClose, reconnectNow as socketReconnectNow, hasSocket, dropSocket,
  isSuperseded, socketOpen, wsSend,
} from './socket.js';
import { ulid } from '/console/ulid.js';
import {
  isEnded, isNotFound, hasToken, hasEndPending, stored, helloFields, resume, onFrame, renderQueue,
} from './conversation.js';
import { updateCounter, showRemoteTyping, typingLost, showError } from './composer.js';
import { screen, showScreen, resumeChat, showEnding, conversationGone } from './lifecycle.js';
import { isExiting } from './exit.js';

storeFrom(() => ({ lang: currentLang(), ...stored() }));
onTexts(renderConn);
onTexts(renderQueue);
onTexts(updateCounter);
initSocket({
  canConnect: () => !isEnded() && !isExiting(),
  hello: helloFields,
  hasToken,
  onFrame,
  onClosed,
});

function onClosed(code) {
  typingLost();
  showRemoteTyping(false);
  if (isExiting()) return;
  if (code === 4004 || isNotFound()) { conversationGone(); return; }
  if (isEnded()) return;
  if (afterClose(code) === 'version') showError('unsupported_version', true);
}

function reconnectNow() {
  if (screen() !== 'chat' || isEnded() || isExiting()) return;
  socketReconnectNow();
}

$('reconnect-here').addEventListener('click', reconnectNow);
$('close-widget').hidden = !inIframe;
$('close-widget').addEventListener('click', () => {
  try { window.parent.postMessage({ type: 'tsunagu:close' }, '*'); } catch (e) { /* ignore */ }
});

window.addEventListener('online', () => { if (!isSuperseded()) reconnectNow(); });
window.addEventListener('offline', () => {
  // The device says it lost the network: treat the socket as gone (it usually is, and a
  // half-dead socket would otherwise take a few heartbeats to notice). Reconnects with
  // backoff; the "online" event retries at once.
  if (screen() !== 'chat' || isEnded() || isSuperseded()) return;
  if (hasSocket()) dropSocket(); else setConn('offline');
});
window.addEventListener('pageshow', (e) => {
  if (e.persisted) reconnectNow(); // restored from the back/forward cache
});
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible' || screen() !== 'chat' || isEnded()) return;
  if (!hasSocket() && !isSuperseded()) reconnectNow();
  else if (socketOpen()) wsSend({ type: 'ping', id: ulid() });
});

function init() {
  if (embedded) document.documentElement.classList.add('embedded');

  const saved = loadStore();
  let wanted = saved.lang || params.get('lang') || DEFAULT_LANG;
  if (CATALOGUES.indexOf(wanted) < 0) wanted = DEFAULT_LANG;

  const configP = loadConfig();
  const catP = loadCatalogue(wanted).catch(() =>
    (wanted === DEFAULT_LANG ? Promise.reject(new Error('no catalogue')) : loadCatalogue(DEFAULT_LANG)));

  Promise.all([catP, configP]).then(() => {
    applyTexts();
    refreshHelplines();
    if (saved.token) {
      // Same tab, after a reload: resume the conversation. The transcript is not stored on the
      // device, so resume from seq 0 and let the server replay it; the outbox is shown as
      // pending and re-sent with the same ids.
      $('messages').setAttribute('aria-busy', 'true');
      resume(saved);
      if (hasEndPending()) showEnding();
      resumeChat();
    } else {
      showScreen('welcome', false);
    }
  }, () => {
    // Not even the Japanese catalogue loaded: keep the quick exit usable, retry shortly.
    $('loading').hidden = false;
    setTimeout(() => { location.reload(); }, 5000);
  });
}

init();
