// Emergency flags in the console: the banner and checklist of the conversation shown, the notice
// when someone else raises or clears a flag, and raising one through the shared flag dialog
// (/console/flag-dialog.js) as a `flag` command. Owns whether flagging is on here, its
// categories and checklist (from the welcome).
//
// The one path that keeps anything of a conversation beyond its close (DESIGN.md, principle 3):
// the operator records a category and a short reason, confirms, and the server keeps a minimal
// encrypted escalation record and alerts the coordinators. The checklist ticks are local only.

import { maxNote } from '/console/console/limits.js';
import { t, setText } from '/console/i18n.js';
import { ulid } from '/console/ulid.js';
import { tone } from '/console/sound.js';
import {
  $, byIds, el, convLabel, fmtClock, toMs, flagCategoryName, EMERGENCY_CATEGORIES, errorText, toast,
} from '/console/util.js';
import { mountFlagDialog } from '/console/flag-dialog.js';
import { command } from '/console/console/socket.js';
import { user } from '/console/console/session.js';
import { getConv, currentConv } from '/console/console/conversations.js';


const E = {
  ...byIds('flag-button', 'emergency-banner', 'emergency-categories', 'emergency-raised',
    'emergency-acked', 'emergency-checklist', 'emergency-checklist-empty'),
  pane: $('#chat-pane'),
};

let flagEnabled = false;       // welcome.emergency_categories is empty when flagging is not enabled
let categories = [...EMERGENCY_CATEGORIES];
let checklist = [];            // next steps shown while an emergency is open (from welcome)

const dialog = mountFlagDialog($('#pause-offer'), {
  maxReason: maxNote,
  categories: () => categories,
  onConfirm: sendFlag,
});

export function itemText(v) {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object') return String(v.text ?? v.label ?? v.id ?? v.category ?? '');
  return v === null || v === undefined ? '' : String(v);
}

/** The welcome says whether flagging is on, with which categories and checklist. */
export function welcomeEmergency(m) {
  const emCats = Array.isArray(m.emergency_categories) ? m.emergency_categories.map(itemText).filter(Boolean) : [];
  flagEnabled = emCats.length > 0;
  if (flagEnabled) { categories = emCats; dialog.renderCategories(); }
  if (Array.isArray(m.emergency_checklist)) checklist = m.emergency_checklist.map(itemText).filter(Boolean);
}

export function emergencyOpen(conv) {
  const em = conv && conv.summary && conv.summary.emergency;
  return !!(em && typeof em === 'object' && em.open === true);
}

export function onEmergencyChange(conv) {
  const em = conv.summary.emergency || {};
  const label = convLabel(conv.id);
  if (emergencyOpen(conv)) {
    // Raised by someone else (a coordinator): make sure the operator notices.
    const me = user();
    if (!conv.flagSending && (!me || em.raised_by !== me.name)) {
      toast(t('flag.raisedByOther', { label, name: em.raised_by || '?' }), 'error', { timeout: 15000 });
      tone('offer');
    }
  } else {
    toast(t('flag.cleared', { label }), 'info', { timeout: 10000 });
  }
}

export function renderEmergency(conv) {
  const open = emergencyOpen(conv);
  E.emergencyBanner.hidden = !open;
  E.pane.dataset.emergency = open ? 'true' : 'false';
  setText(E.flagButton, open ? 'flag.add' : 'flag.button');
  const st = conv && conv.summary.state;
  E.flagButton.disabled = !conv || !flagEnabled || (st !== 'active' && st !== 'wrap_up');
  if (flagEnabled) E.flagButton.removeAttribute('title');
  else E.flagButton.title = t('flag.notEnabled');
  if (!open) return;
  const em = conv.summary.emergency;
  const cats = Array.isArray(em.categories) ? em.categories.map(itemText) : [];
  E.emergencyCategories.replaceChildren(...cats.map((c) =>
    el('li', { class: 'chip chip-emergency', data: { category: c }, text: flagCategoryName(c) })));
  const at = toMs(em.raised_at);
  setText(E.emergencyRaised, Number.isFinite(at) ? 'emergency.raised' : 'emergency.raisedNoTime',
    { name: em.raised_by || '?', time: Number.isFinite(at) ? fmtClock(at) : '' });
  const acked = em.acknowledged_by !== null && em.acknowledged_by !== undefined && em.acknowledged_by !== '';
  setText(E.emergencyAcked, acked ? 'emergency.acked' : 'emergency.notAcked', { name: acked ? itemText(em.acknowledged_by) : '' });
  E.emergencyAcked.dataset.acknowledged = acked ? 'true' : 'false';
  renderChecklist(conv);
}

function renderChecklist(conv) {
  const items = checklist;
  // Rebuild only when the conversation or the list changes, so ticking never loses focus.
  const sig = JSON.stringify([conv.id, items]);
  E.emergencyChecklistEmpty.hidden = items.length > 0;
  if (E.emergencyChecklist.dataset.sig === sig) return;
  E.emergencyChecklist.dataset.sig = sig;
  if (!conv.checks) conv.checks = new Set();
  E.emergencyChecklist.replaceChildren(...items.map((text, i) => {
    const id = `check-${conv.id}-${i}`;
    const box = el('input', { type: 'checkbox', id, data: { testid: 'checklist-item' } });
    box.checked = conv.checks.has(text);
    box.addEventListener('change', () => {
      if (box.checked) conv.checks.add(text); else conv.checks.delete(text);
      box.closest('li').classList.toggle('done', box.checked);
    });
    const li = el('li', { class: box.checked ? 'done' : '' }, box, el('label', { for: id, text }));
    return li;
  }));
}

/** Redraws what depends on the language. */
export function refreshFlagDialog() { dialog.refresh(); }

/** The conversation is gone: a flag dialog open for it closes. */
export function closeFlagFor(id) { dialog.closeFor(id); }

function openFlag() {
  const conv = currentConv();
  if (!conv) return;
  const st = conv.summary.state;
  if (st !== 'active' && st !== 'wrap_up') return;
  if (!flagEnabled) { toast(t('flag.notEnabled'), 'error'); return; }
  dialog.open(conv.id, { label: convLabel(conv.id), adding: emergencyOpen(conv) });
}

/** Sends `flag`. A retry of the same category and reason reuses the client id. */
function sendFlag(f, { category, reason }) {
  const conv = getConv(f.conversation);
  if (!conv) { f.busy = false; dialog.close(true); toast(errorText('not_found'), 'error'); return; }
  const key = `${category}\u0000${reason}`;
  if (!f.clientId || f.key !== key) { f.clientId = ulid(); f.key = key; }
  conv.flagSending = true;
  const failed = (text, keepId) => {
    conv.flagSending = false;
    if (!keepId) f.clientId = null;
    dialog.failed(f, text);
  };
  command('flag', { conversation: conv.id, category, reason }, {
    id: f.clientId,
    onAck: () => {
      conv.flagSending = false;
      dialog.done(f);
      toast(t('flag.done'), 'success', { timeout: 10000 });
    },
    onError: (err) => {
      // Nothing was stored for `unavailable` / not connected: a retry keeps the same id.
      const keep = err.code === 'unavailable' || err.code === 'not_connected';
      const text = err.code === 'not_connected' ? t('error.notConnected') : errorText(err.code, 'flag');
      failed(text, keep);
    },
    onInterrupt: () => failed(t('flag.interrupted'), true),
  });
}

E.flagButton.addEventListener('click', openFlag);
