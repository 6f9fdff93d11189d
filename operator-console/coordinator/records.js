// Escalation records (every read is audited by the server) and, for admins, the audit trail.
// Owns the records list and its rows, the record dialog and the one record shown in it, and
// the audit entries. Neither list is polled blindly: see startRecords.

import { t, has, setText } from '/console/i18n.js';
import { api } from '/console/auth.js';
import {
  $, byIds, el, convLabel, fmtClock, fmtDateTime, toMs, channelName, categoryName, flagCategoryName, EMERGENCY_CATEGORIES,
} from '/console/util.js';
import { openDialog, closeDialog } from '/console/flag-dialog.js';
import { user, isAdmin, isStopped, expire, flaggingOff } from '/console/coordinator/session.js';
import { categoriesText, hasValue, placeInOrder, showStatus, httpErrorText, fetchList } from '/console/coordinator/view.js';

const AUDIT_POLL_MS = 30000;

const E = {
  ...byIds('flagging-off', 'audit-section', 'audit-rows', 'audit-empty', 'audit-status',
    'audit-updated', 'record-dialog', 'record-audit', 'record-status', 'record-body',
    'record-conversation', 'record-channel', 'record-channel-ref', 'record-created',
    'record-expires', 'record-flags', 'record-actions', 'record-transcript', 'record-close',
    'record-state'),
  escRows: $('#escalation-rows'),
  escEmpty: $('#escalations-empty'),
  escStatus: $('#escalations-status'),
  escUpdated: $('#escalations-updated'),
  escRefresh: $('#escalations-refresh'),
  escNote: $('#escalations-note'),
  escTable: $('#escalations-table'),
};

let escalations = [];
const escRows = new Map();
let escLoading = false;
let audit = [];
let auditLoading = false;
let auditHidden = false;
let auditTimer = null;
let recordId = null;

function renderFlagging() {
  const off = flaggingOff();
  E.flaggingOff.hidden = !off;
  E.escNote.hidden = off;
  E.escTable.hidden = off;
  E.escRefresh.hidden = off;
  if (off) { showStatus(E.escStatus, null); E.escEmpty.hidden = true; }
}

/**
 * Every listing of escalation records is written to the audit trail, so the list is not
 * polled: it is loaded at start, when the set of open emergencies changes, after a flag or
 * clear from this page, and by the refresh button. The audit trail is for admins; a
 * coordinator would get 403, so only admins ask.
 */
export function startRecords() {
  auditHidden = flaggingOff();
  E.auditSection.hidden = true;
  renderFlagging();
  loadEscalations();
  if (isAdmin() && !flaggingOff()) {
    loadAudit();
    auditTimer = setInterval(loadAudit, AUDIT_POLL_MS);
  }
}

export function stopRecords() {
  clearInterval(auditTimer);
  auditTimer = null;
  closeRecord();
}

export async function loadEscalations() {
  if (isStopped() || escLoading || flaggingOff()) return;
  escLoading = true;
  const list = await fetchList('/api/escalations', E.escStatus, E.escUpdated);
  escLoading = false;
  if (!list) return;
  escalations = list.filter((x) => x && hasValue(x.id));
  renderEscalations();
}

export function renderEscalations() {
  const list = [...escalations];
  list.sort((a, b) => (b.open === true) - (a.open === true) || (toMs(b.created_at) - toMs(a.created_at)));
  const keep = new Set();
  for (const x of list) {
    const id = String(x.id);
    keep.add(id);
    let row = escRows.get(id);
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
      escRows.set(id, row);
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
  for (const [id, row] of escRows) {
    if (!keep.has(id)) { row.remove(); escRows.delete(id); }
  }
  placeInOrder(E.escRows, list.map((x) => escRows.get(String(x.id))));
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
  recordId = id;
  clearRecordBody();
  const me = user();
  setText(E.recordAudit, 'rec.auditNotice', { name: (me && me.name) || '?', time: fmtDateTime(Date.now()) });
  setText(E.recordStatus, 'rec.loading');
  E.recordStatus.hidden = false;
  E.recordDialog.dataset.record = id;
  openDialog(E.recordDialog);
  E.recordClose.focus();
  const r = await api(`/api/escalations/${encodeURIComponent(id)}`);
  if (recordId !== id) return;
  if (r.status === 401) { closeRecord(); expire(); return; }
  if (!r.ok || !r.data || typeof r.data !== 'object') {
    E.recordStatus.textContent = t('rec.error', { detail: httpErrorText(r) });
    delete E.recordStatus.dataset.i18n;
    return;
  }
  renderRecord(r.data);
  if (isAdmin()) loadAudit();
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
  recordId = null;
  delete E.recordDialog.dataset.record;
  clearRecordBody();
  closeDialog(E.recordDialog);
}

// ---------------------------------------------------------------- audit trail (admins)

async function loadAudit() {
  if (isStopped() || auditLoading || auditHidden) return;
  auditLoading = true;
  const r = await api('/api/audit');
  auditLoading = false;
  if (isStopped()) return;
  if (r.status === 401) { expire(); return; }
  if (r.status === 403) { auditHidden = true; E.auditSection.hidden = true; return; }
  E.auditSection.hidden = false;
  if (!r.ok || !Array.isArray(r.data)) { showStatus(E.auditStatus, 'coord.loadError', { status: r.network ? '—' : r.status }); return; }
  showStatus(E.auditStatus, null);
  audit = r.data.filter((x) => x && typeof x === 'object');
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

export function renderAudit() {
  const list = [...audit].sort((a, b) => toMs(b.at) - toMs(a.at)).slice(0, 500);
  E.auditRows.replaceChildren(...list.map((a) => el('tr', { data: { testid: 'audit-row', action: String(a.action ?? ''), record: String(a.record ?? '') } },
    el('td', { text: fmtDateTime(toMs(a.at)) || '—' }),
    auditActor(a),
    el('td', { text: actionName(a.action) }),
    el('td', { class: 'mono small', text: hasValue(a.record) ? String(a.record) : '—' }))));
  E.auditEmpty.hidden = list.length > 0;
}

E.recordClose.addEventListener('click', closeRecord);
E.recordDialog.addEventListener('close', () => { if (recordId) closeRecord(); });
E.escRefresh.addEventListener('click', loadEscalations);
