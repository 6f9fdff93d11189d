// The live numbers: GET /api/dashboard/stream (Server-Sent Events, event "stats"), reconnected
// with backoff. Owns the EventSource, its retry timer and when the last snapshot came; each
// snapshot goes to the page's onStats.

import { getMe } from '/console/auth.js';
import { setText } from '/console/i18n.js';
import { $ } from '/console/util.js';
import { isStopped, isAllowed, expire } from '/console/coordinator/session.js';

const STALE_MS = 5000;

const status = $('#stream-status');
const statusText = $('#stream-text');

let es = null;
let attempt = 0;
let retryTimer = null;
let lastStats = 0;
let hooks = { onStats: () => {}, onForbidden: () => {} };

export function initStream(h) { hooks = h; }

export function setStream(st) {
  status.dataset.state = st;
  setText(statusText, `coord.stream.${st}`);
}

/** A snapshot arrived (from the stream or from the first GET). */
export function gotStats(data) {
  lastStats = Date.now();
  hooks.onStats(data);
}

export function startStream() {
  clearTimeout(retryTimer);
  if (isStopped()) return;
  if (es) es.close();
  setStream('reconnecting');
  const source = new EventSource('/api/dashboard/stream', { withCredentials: true });
  es = source;
  source.addEventListener('open', () => { if (es === source) { attempt = 0; setStream('connected'); } });
  source.addEventListener('stats', (e) => {
    if (es !== source) return;
    let data;
    try { data = JSON.parse(e.data); } catch (_) { return; }
    if (!data || typeof data !== 'object') return;
    attempt = 0;
    try { gotStats(data); } catch (err) { console.error('coordinator: bad snapshot', err); }
    setStream('connected');
  });
  source.addEventListener('error', async () => {
    if (es !== source) return;
    if (source.readyState === EventSource.CONNECTING) { setStream('reconnecting'); return; }
    // CLOSED: the browser gave up (for example a 401 or 403 answer). Find out why.
    source.close();
    es = null;
    setStream('offline');
    const me = await getMe();
    if (isStopped()) return;
    if (me.status === 401) { expire(); return; }
    if (me.ok && me.data && !isAllowed(me.data)) { hooks.onForbidden(); return; }
    const base = Math.min(10000, 500 * 2 ** attempt);
    attempt += 1;
    retryTimer = setTimeout(startStream, Math.max(500, base / 2 + Math.random() * base / 2));
  });
}

/** Starts afresh after login (the page has set the session live). */
export function restartStream() {
  attempt = 0;
  startStream();
}

export function stopStream() {
  clearTimeout(retryTimer);
  if (es) { es.close(); es = null; }
}

/** Once a second: no snapshot for a while on a stream that says connected means it is not. */
export function checkStale() {
  if (!isStopped() && lastStats && Date.now() - lastStats > STALE_MS && status.dataset.state === 'connected') {
    setStream('reconnecting');
  }
}
