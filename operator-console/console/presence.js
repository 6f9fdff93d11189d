// The operator's presence (on duty, away, off duty) with their load and capacity, the queue
// figures in the status bar, and the pause offered after a hard conversation. Owns presence,
// load, capacity and the last queue figures.

import { t, setText } from '/console/i18n.js';
import { $, byIds, fmtDuration, errorText, toast } from '/console/util.js';
import { command } from '/console/console/socket.js';

const E = {
  ...byIds('queue-waiting', 'queue-longest', 'presence-load', 'take-next', 'pause-offer',
    'pause-accept', 'pause-decline'),
  presence: $('#presence-select'),
};

let presence = 'off_duty';
let load = 0;
let capacity = 0;
let queue = { waiting: 0, longest: 0, at: Date.now() };

export function isOnDuty() { return presence === 'on_duty'; }

/** The welcome's presence and capacity. */
export function welcomePresence(m) {
  onPresence({ state: m.presence || presence, load, capacity: m.capacity ?? capacity });
}

/** Until the next `presence` event, the load is what this console holds. */
export function holdLoad(n) {
  load = n;
  renderPresence();
}

export function onPresence(m) {
  if (m.state) presence = m.state;
  if (Number.isFinite(m.load)) load = m.load;
  if (Number.isFinite(m.capacity)) capacity = m.capacity;
  renderPresence();
}

export function renderPresence() {
  if (document.activeElement !== E.presence) E.presence.value = presence;
  setText(E.presenceLoad, 'presence.load', { load, capacity });
  E.presenceLoad.classList.toggle('full', capacity > 0 && load >= capacity);
}

export function onQueue(m) {
  queue = {
    waiting: Number.isFinite(m.waiting) ? m.waiting : 0,
    longest: Number.isFinite(m.longest_wait_ms) ? m.longest_wait_ms : 0,
    at: Date.now(),
  };
  renderQueue();
}

export function renderQueue() {
  const q = queue;
  E.queueWaiting.textContent = String(q.waiting);
  E.queueWaiting.parentElement.classList.toggle('hot', q.waiting > 0);
  E.queueLongest.textContent = q.waiting > 0 ? fmtDuration(q.longest + (Date.now() - q.at)) : t('queue.none');
}

/** Presence and take-next work only on a live connection. */
export function setControlsEnabled(on) {
  E.presence.disabled = !on;
  E.takeNext.disabled = !on;
}

export function setPresence(value) {
  const before = presence;
  E.presence.value = value;
  command('presence', { state: value }, {
    onAck: () => { presence = value; renderPresence(); },
    onError: (e) => {
      presence = before;
      E.presence.value = before;
      toast(e.code === 'not_connected' ? t('error.notConnected') : errorText(e.code), 'error');
    },
  });
}

// ---------------------------------------------------------------- pause after a hard conversation

export function offerPause() {
  if (E.pauseOffer.open) return;
  if (typeof E.pauseOffer.showModal === 'function') E.pauseOffer.showModal();
  else E.pauseOffer.setAttribute('open', '');
  E.pauseAccept.focus();
}

export function closePause() {
  if (!E.pauseOffer.open) return;
  if (typeof E.pauseOffer.close === 'function') E.pauseOffer.close();
  else E.pauseOffer.removeAttribute('open');
}

function acceptPause() {
  closePause();
  if (presence === 'on_duty') setPresence('away');
  toast(t('pause.started'), 'info', { timeout: 10000 });
}

E.presence.addEventListener('change', () => setPresence(E.presence.value));
E.pauseAccept.addEventListener('click', acceptPause);
E.pauseDecline.addEventListener('click', closePause);
