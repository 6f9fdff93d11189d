// Help-request and emergency alerts (from each snapshot), acknowledging them, the reminder tones
// until they are acknowledged, the open emergencies table, and the page title that counts what
// is unacknowledged. Owns the alerts last seen, which of them this page acknowledged, and their
// elements.

import { t, setText } from '/console/i18n.js';
import { api } from '/console/auth.js';
import { tone } from '/console/sound.js';
import { $, byIds, el, convLabel, fmtClock, fmtDuration, toMs, flagCategoryName, toast } from '/console/util.js';
import { user, isStopped, expire } from '/console/coordinator/session.js';
import { categoriesText, hasValue, placeInOrder, updateSince } from '/console/coordinator/view.js';
import { loadConversations } from '/console/coordinator/conversations.js';
import { loadEscalations } from '/console/coordinator/records.js';

const ALERT_REMINDER_MS = 20000;
const EMERGENCY_REMINDER_MS = 5000;   // an unacknowledged emergency keeps sounding

const E = {
  ...byIds('alerts', 'alerts-empty', 'alerts-count', 'emergency-section', 'emergency-count',
    'emergency-alerts', 'emergencies', 'emergencies-empty'),
};

let alerts = null;                 // the snapshot's alerts, last rendered
const seenAlerts = new Set();
const ackedLocally = new Map();    // alert id -> my name (until the snapshot says so)
const alertEls = new Map();
let lastAlertTone = 0;
let lastEmergencyTone = 0;
const emergencyRows = new Map();   // conversation id -> <tr>
let emergencySig = null;           // open emergencies last seen (a change reloads the records)
let onAcked = () => {};

/** `fn` redraws the snapshot after this page acknowledged an alert. */
export function whenAcked(fn) { onAcked = fn; }

function isAcked(a) {
  return (a.acknowledged_by !== null && a.acknowledged_by !== undefined) || ackedLocally.has(a.id);
}

/** Unacknowledged alerts; kind 'emergency' counts only those. */
function unackedCount(kind) {
  if (!alerts) return 0;
  return alerts.filter((a) => a && a.id && !isAcked(a) && (!kind || a.kind === kind)).length;
}

const isEmergency = (a) => a.kind === 'emergency';

export function renderAlerts(all) {
  alerts = all;
  const list = all.filter((a) => a && a.id);
  // Unacknowledged first, newest first.
  list.sort((a, b) => (isAcked(a) - isAcked(b)) || (toMs(b.at) - toMs(a.at)));
  let newUnacked = false;
  let newEmergency = false;
  const keep = new Set();
  for (const a of list) {
    keep.add(a.id);
    if (!seenAlerts.has(a.id)) {
      seenAlerts.add(a.id);
      if (!isAcked(a)) newUnacked = true;
      if (isEmergency(a)) newEmergency = true;
    }
    if (a.acknowledged_by) ackedLocally.delete(a.id);
    let item = alertEls.get(a.id);
    if (!item) { item = buildAlert(a); alertEls.set(a.id, item); }
    updateAlert(item, a);
  }
  for (const [id, item] of alertEls) {
    if (!keep.has(id)) { item.remove(); alertEls.delete(id); }
  }
  // Emergencies have their own list at the very top; help requests stay in theirs.
  const emergencies = list.filter(isEmergency);
  const others = list.filter((a) => !isEmergency(a));
  placeInOrder(E.emergencyAlerts, emergencies.map((a) => alertEls.get(a.id)));
  placeInOrder(E.alerts, others.map((a) => alertEls.get(a.id)));
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
  if (newUnacked && unackedEm > 0 && newEmergency) { tone('emergency'); lastEmergencyTone = Date.now(); }
  else if (newUnacked) { tone('alert'); lastAlertTone = Date.now(); }
  renderEmergencySectionState();
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
  const by = a.acknowledged_by || ackedLocally.get(a.id);
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

async function ackAlert(id, btn) {
  btn.disabled = true;
  const r = await api(`/api/alerts/${encodeURIComponent(id)}/ack`, { method: 'POST' });
  btn.disabled = false;
  if (r.status === 401) { expire(); return; }
  if (!r.ok) { toast(t('coord.ackFailed', { status: r.status || '—' }), 'error'); return; }
  const me = user();
  ackedLocally.set(id, (me && me.name) || '');
  onAcked();
}

export function updateTitle() {
  const base = `${t('app.name')} ${t('coord.subtitle')}`;
  const n = unackedCount();
  const em = unackedCount('emergency');
  const prefix = em > 0 ? `${t('coord.titleEmergency', { n: em })} ` : '';
  document.title = n > 0 ? `${prefix}(!${n}) ${base}` : base;
}

/** Once a second: alert ages, emergency timers, and the reminder tone until acknowledged. */
export function tickAlerts() {
  if (alerts) for (const item of alertEls.values()) updateAlertTime(item);
  updateSince(E.emergencies);
  const now = Date.now();
  if (unackedCount('emergency') > 0) {
    // Repeats until acknowledged.
    if (now - lastEmergencyTone > EMERGENCY_REMINDER_MS) { tone('emergency'); lastEmergencyTone = now; }
  } else if (unackedCount() > 0 && now - lastAlertTone > ALERT_REMINDER_MS) {
    tone('alert');
    lastAlertTone = now;
  }
}

// ---------------------------------------------------------------- open emergencies (snapshot)

export function renderEmergencies(list) {
  const items = list.filter((e) => e && e.conversation);
  items.sort((a, b) => (hasValue(a.acknowledged_by) - hasValue(b.acknowledged_by)) || (toMs(a.raised_at) - toMs(b.raised_at)));
  const keep = new Set();
  for (const e of items) {
    keep.add(e.conversation);
    let row = emergencyRows.get(e.conversation);
    if (!row) {
      row = el('tr', { data: { testid: 'emergency-row', conversation: e.conversation } },
        el('th', { scope: 'row', data: { role: 'label' } }),
        el('td', { data: { role: 'operator' } }),
        el('td', { class: 'emergency-cats', data: { role: 'categories' } }),
        el('td', { class: 'timer', data: { role: 'since', sinceFormat: 'clock' } }),
        el('td', { data: { role: 'acked' } }));
      emergencyRows.set(e.conversation, row);
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
  for (const [id, row] of emergencyRows) {
    if (!keep.has(id)) { row.remove(); emergencyRows.delete(id); }
  }
  placeInOrder(E.emergencies, items.map((e) => emergencyRows.get(e.conversation)));
  const sig = items.map((e) => `${e.conversation}:${categoriesText(e.categories)}`).sort().join('|');
  if (emergencySig !== null && emergencySig !== sig && !isStopped()) loadEscalations();
  emergencySig = sig;
  E.emergenciesEmpty.hidden = items.length > 0;
  E.emergencies.closest('table').hidden = items.length === 0;
  updateSince(E.emergencies);
  renderEmergencySectionState();
}

function renderEmergencySectionState() {
  const unacked = unackedCount('emergency');
  const open = emergencyRows.size;
  E.emergencySection.dataset.state = unacked > 0 ? 'alert' : (open > 0 ? 'open' : 'none');
}
