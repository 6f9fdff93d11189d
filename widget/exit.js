// Quick exit: the button, or Escape twice within 1.2 s, ends the conversation at once, wipes
// session storage, empties the page and replaces it with a neutral one (the host page too when
// embedded). Owns whether the person is leaving; bound before anything has loaded.

import { ulid } from '/console/ulid.js';
import { $, inIframe } from './dom.js';
import { wipeStore } from './store.js';
import { closeForGood } from './socket.js';
import { widgetConfig } from './config.js';

const FALLBACK_EXIT_URL = 'https://www.google.com/search?q=weather';
const ESC_WINDOW_MS = 1200;

let exiting = false;

export function isExiting() { return exiting; }

function exitUrl() {
  const config = widgetConfig();
  const u = config && config.quick_exit_url;
  try {
    const parsed = new URL(u);
    if (parsed.protocol === 'https:' || parsed.protocol === 'http:') return parsed.href;
  } catch (e) { /* fall through */ }
  return FALLBACK_EXIT_URL;
}

function quickExit() {
  if (exiting) return;
  exiting = true;
  const url = exitUrl();
  // The person cannot come back to this conversation (storage is wiped), so end it at once
  // rather than leave an operator waiting for someone who has gone.
  closeForGood({ type: 'end', id: ulid() });
  wipeStore();
  // Nothing of the conversation stays on screen, even for a moment.
  try { $('app').textContent = ''; document.title = ''; } catch (e) { /* ignore */ }
  if (inIframe) {
    try { window.parent.postMessage({ type: 'tsunagu:quick-exit', url }, '*'); } catch (e) { /* ignore */ }
    try { window.top.location.replace(url); } catch (e) { /* cross-origin top: the host script does it */ }
    try { location.replace('about:blank'); } catch (e) { /* ignore */ }
  } else {
    location.replace(url);
  }
}

$('quick-exit').addEventListener('click', quickExit);
let lastEsc = 0;
document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape' && e.key !== 'Esc') return;
  if (e.isComposing || e.keyCode === 229) return; // Escape cancelling an IME conversion
  const now = Date.now();
  if (now - lastEsc <= ESC_WINDOW_MS) { e.preventDefault(); quickExit(); return; }
  lastEsc = now;
}, true);
