// The dashboard's numbers from each snapshot (queue, staffing, conversations, today), the
// staffing banners and the overloaded switch. Owns the latest snapshot; its alerts and open
// emergencies are handed to alerts.js.

import { t } from '/console/i18n.js';
import { api } from '/console/auth.js';
import { $, byIds, el, fmtMmSs, fmtClock, channelName, toast } from '/console/util.js';
import { expire } from '/console/coordinator/session.js';
import { renderAlerts, renderEmergencies, updateTitle } from '/console/coordinator/alerts.js';
import { notifySnapshot } from '/console/coordinator/notify.js';

const E = {
  ...byIds('updated', 'banners', 'by-channel', 'card-waiting', 'card-longest', 'card-operators',
    'overloaded-state', 'overloaded-toggle'),
  waiting: $('#stat-waiting'),
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
};

let snapshot = null;

function num(v) { return Number.isFinite(v) ? v : 0; }

export function onStats(s) {
  snapshot = s;
  render(s);
  notifySnapshot(s);
}

/** Draws the latest snapshot again (language change, an alert acknowledged here). */
export function rerender() {
  if (snapshot) render(snapshot);
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

  // Staffing, waits and deliveries are decided on the server (gateway/src/alerting/): the page
  // shows the conditions the snapshot says hold, with the server's counts and thresholds.
  const conditions = Array.isArray(s.conditions) ? s.conditions : [];
  const cond = (kind) => conditions.find((c) => c && c.kind === kind);
  const nobody = cond('nobody_on_duty');
  const few = cond('few_on_duty');
  const longWait = cond('long_wait');
  const failing = cond('delivery_failing');
  const nodeDown = cond('node_down');
  const thin = Boolean(nobody || few);
  const long = waiting > 5;
  E.cardOperators.classList.toggle('hot', thin);
  E.cardWaiting.classList.toggle('hot', long);
  E.cardLongest.classList.toggle('hot', long || Boolean(longWait));
  const banners = [];
  if (nobody) banners.push(el('p', { class: 'banner', data: { testid: 'alert-thin' }, i18n: ['coord.nobody', {}] }));
  else if (few) banners.push(el('p', { class: 'banner', data: { testid: 'alert-thin' }, i18n: ['coord.thin', { n: num(few.value), min: num(few.threshold) }] }));
  if (long) banners.push(el('p', { class: 'banner', data: { testid: 'alert-queue' }, i18n: ['coord.queueLong', { n: waiting }] }));
  if (longWait) banners.push(el('p', { class: 'banner', data: { testid: 'alert-long-wait' }, i18n: ['coord.longWait', { min: Math.round(num(longWait.threshold) / 60) }] }));
  if (failing) banners.push(el('p', { class: 'banner', data: { testid: 'alert-delivery' }, i18n: ['coord.deliveryFailing', { n: num(failing.value) }] }));
  if (nodeDown) banners.push(el('p', { class: 'banner', data: { testid: 'alert-node-down' }, i18n: ['coord.nodeDown', { n: num(nodeDown.value), expected: num(nodeDown.threshold) }] }));
  // Only touch the live region when the set of banners changes.
  const sig = `${nobody ? 0 : few ? num(few.value) : '-'}|${long ? waiting : '-'}|${longWait ? 1 : '-'}|${failing ? num(failing.value) : '-'}|${nodeDown ? num(nodeDown.value) : '-'}`;
  if (E.banners.dataset.sig !== sig) { E.banners.dataset.sig = sig; E.banners.replaceChildren(...banners); }

  renderOverloaded(s.overloaded === true);

  E.updated.textContent = t('coord.updated', { time: fmtClock(Date.now(), true) });
  renderAlerts(Array.isArray(s.alerts) ? s.alerts : []);
  renderEmergencies(Array.isArray(s.emergencies) ? s.emergencies : []);
  updateTitle();
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
  if (!snapshot) return;
  const on = snapshot.overloaded !== true;
  if (!window.confirm(t(on ? 'coord.overloadedConfirmOn' : 'coord.overloadedConfirmOff'))) return;
  const btn = E.overloadedToggle;
  btn.disabled = true;
  btn.dataset.busy = '1';
  const r = await api('/api/service/overloaded', { method: 'POST', body: { on } });
  delete btn.dataset.busy;
  btn.disabled = false;
  if (r.status === 401) { expire(); return; }
  if (!r.ok) { toast(t('coord.overloadedFailed', { status: r.status || '—' }), 'error'); return; }
  snapshot.overloaded = on;
  render(snapshot);
}

E.overloadedToggle.addEventListener('click', toggleOverloaded);
