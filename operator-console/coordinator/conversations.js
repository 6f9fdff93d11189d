// Live conversations (GET /api/conversations, without content), polled, with raise and clear
// flag. Owns the list last loaded, its rows, and the clear dialog; the flag dialog is the shared
// one (/console/flag-dialog.js), sending through the API.

import { t, has, setText } from '/console/i18n.js';
import { api } from '/console/auth.js';
import { $, byIds, el, convLabel, toMs, charCount, channelName, langName, EMERGENCY_CATEGORIES, toast } from '/console/util.js';
import { mountFlagDialog, openDialog, closeDialog, formError, setInvalid } from '/console/flag-dialog.js';
import { isStopped, expire, flaggingOff } from '/console/coordinator/session.js';
import { categoriesText, hasValue, placeInOrder, updateSince, httpErrorText, fetchList } from '/console/coordinator/view.js';
import { loadEscalations } from '/console/coordinator/records.js';

const MAX_REASON = 500;

const E = {
  ...byIds('conv-rows', 'convs-empty', 'convs-status', 'convs-updated', 'clear-dialog',
    'clear-form', 'clear-for', 'clear-reason', 'clear-error', 'clear-cancel', 'clear-submit'),
};

let convs = [];
const convRows = new Map();
let loading = false;
let clear = null;                // the open clear dialog: { conversation, busy }

const flagDialog = mountFlagDialog(E.clearDialog, {
  maxReason: MAX_REASON,
  categories: () => EMERGENCY_CATEGORIES,
  onConfirm: confirmFlag,
});

export async function loadConversations() {
  if (isStopped() || loading) return;
  loading = true;
  const list = await fetchList('/api/conversations', E.convsStatus, E.convsUpdated);
  loading = false;
  if (!list) return;
  convs = list.filter((c) => c && typeof c.id === 'string');
  renderConversations();
}

function emergencyOpen(c) { return !!(c && c.emergency && typeof c.emergency === 'object' && c.emergency.open === true); }

export function renderConversations() {
  const list = [...convs];
  // Open emergencies first, then the longest running.
  list.sort((a, b) => (emergencyOpen(b) - emergencyOpen(a)) || (toMs(a.started_at) - toMs(b.started_at)));
  const keep = new Set();
  for (const c of list) {
    keep.add(c.id);
    let row = convRows.get(c.id);
    if (!row) { row = buildConvRow(c.id); convRows.set(c.id, row); }
    updateConvRow(row, c);
  }
  for (const [id, row] of convRows) {
    if (!keep.has(id)) { row.remove(); convRows.delete(id); }
  }
  placeInOrder(E.convRows, list.map((c) => convRows.get(c.id)));
  E.convsEmpty.hidden = list.length > 0;
  updateSince(E.convRows);
}

/** Once a second: the conversations' running times. */
export function tickConversations() { updateSince(E.convRows); }

/** Redraws what depends on the language. */
export function refreshConversations() {
  flagDialog.renderCategories();
  renderConversations();
}

/** Closes the dialogs (logout, or the page stopped). */
export function closeConversationDialogs() {
  flagDialog.close(true);
  closeDialog(E.clearDialog);
}

function buildConvRow(id) {
  const flagBtn = el('button', { type: 'button', class: 'btn btn-small btn-emergency', data: { testid: 'coord-flag' } });
  const clearBtn = el('button', { type: 'button', class: 'btn btn-small', data: { testid: 'coord-clear' }, i18n: ['coord.clear'], hidden: true });
  flagBtn.addEventListener('click', () => openFlag(id));
  clearBtn.addEventListener('click', () => openClear(id));
  return el('tr', { data: { testid: 'conversation-row', conversation: id } },
    el('th', { scope: 'row', data: { role: 'label' } }),
    el('td', { data: { role: 'state' } }),
    el('td', { data: { role: 'channel' } }),
    el('td', { data: { role: 'operator' } }),
    el('td', { class: 'timer', data: { role: 'since' } }),
    el('td', { data: { role: 'emergency' } }),
    el('td', { class: 'row-actions' }, flagBtn, clearBtn));
}

function updateConvRow(row, c) {
  const open = emergencyOpen(c);
  row.dataset.state = String(c.state || '');
  row.dataset.emergency = open ? 'true' : 'false';
  row.querySelector('[data-role="label"]').textContent = convLabel(c.id);
  const st = String(c.state || '');
  row.querySelector('[data-role="state"]').textContent = has(`coord.state.${st}`) ? t(`coord.state.${st}`) : (st || '—');
  row.querySelector('[data-role="channel"]').textContent =
    [channelName(c.channel), c.language ? langName(c.language) : null].filter(Boolean).join(' · ');
  row.querySelector('[data-role="operator"]').textContent = c.operator || '—';
  row.querySelector('[data-role="since"]').dataset.since = String(toMs(c.started_at));
  const emCell = row.querySelector('[data-role="emergency"]');
  emCell.classList.toggle('hot', open);
  const em = c.emergency && typeof c.emergency === 'object' ? c.emergency : null;
  if (open) {
    // acknowledged_by may be absent from this list: say "not acknowledged" only when it is null.
    const notAcked = 'acknowledged_by' in em && !hasValue(em.acknowledged_by);
    emCell.textContent = `${categoriesText(em.categories)}${notAcked ? ` ${t('coord.notAckedParen')}` : ''}`;
  } else if (em) setText(emCell, 'coord.emergency.cleared');
  else emCell.textContent = '—';
  const flagBtn = row.querySelector('[data-testid="coord-flag"]');
  setText(flagBtn, open ? 'coord.flagAdd' : 'coord.flag');
  flagBtn.hidden = flaggingOff();
  row.querySelector('[data-testid="coord-clear"]').hidden = !open;
}

// ---------------------------------------------------------------- raise / clear a flag

function openFlag(id) {
  const c = convs.find((x) => x.id === id);
  flagDialog.open(id, { label: convLabel(id), adding: emergencyOpen(c) });
}

async function confirmFlag(f, { category, reason }) {
  const r = await api(`/api/conversations/${encodeURIComponent(f.conversation)}/flag`, { method: 'POST', body: { category, reason } });
  if (r.status === 401) { f.busy = false; expire(); return; }
  if (!r.ok) { flagDialog.failed(f, t('coord.actionFailed', { detail: httpErrorText(r) })); return; }
  flagDialog.done(f);
  toast(t('coord.flagDone', { label: convLabel(f.conversation) }), 'success');
  loadConversations();
  loadEscalations();
}

function openClear(id) {
  clear = { conversation: id, busy: false };
  setText(E.clearFor, 'coord.clearFor', { label: convLabel(id) });
  E.clearReason.value = '';
  setInvalid(E.clearReason, false);
  formError(E.clearError, null);
  E.clearSubmit.disabled = false;
  openDialog(E.clearDialog);
  E.clearReason.focus();
}

async function submitClear(e) {
  e.preventDefault();
  const c = clear;
  if (!c || c.busy) return;
  const reason = E.clearReason.value.trim();
  const n = charCount(reason);
  setInvalid(E.clearReason, n === 0 || n > MAX_REASON);
  if (n === 0) { formError(E.clearError, 'coord.clearNeedReason'); E.clearReason.focus(); return; }
  if (n > MAX_REASON) { formError(E.clearError, 'flag.reasonTooLong', { max: MAX_REASON }); E.clearReason.focus(); return; }
  c.busy = true;
  E.clearSubmit.disabled = true;
  formError(E.clearError, null);
  const r = await api(`/api/conversations/${encodeURIComponent(c.conversation)}/flag/clear`, { method: 'POST', body: { reason } });
  c.busy = false;
  E.clearSubmit.disabled = false;
  if (r.status === 401) { expire(); return; }
  if (!r.ok) {
    const text = t('coord.actionFailed', { detail: httpErrorText(r) });
    if (clear === c && E.clearDialog.open) formError(E.clearError, null, null, text);
    else toast(text, 'error', { timeout: 0 });
    return;
  }
  if (clear === c) { clear = null; closeDialog(E.clearDialog); }
  toast(t('coord.cleared', { label: convLabel(c.conversation) }), 'success');
  loadConversations();
  loadEscalations();
}

E.clearForm.addEventListener('submit', submitClear);
E.clearCancel.addEventListener('click', () => closeDialog(E.clearDialog));
E.clearDialog.addEventListener('close', () => { if (clear && !clear.busy) clear = null; });
E.clearReason.addEventListener('input', () => setInvalid(E.clearReason, false));
