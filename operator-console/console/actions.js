// What an operator does to the conversation shown: ask a coordinator for help, end it, wrap it
// up with a category, transfer it to a colleague or the queue. Owns the wrap-up categories (from
// the welcome) and the transfer dialog.

import { maxNote } from '/console/console/limits.js';
import { t, setText } from '/console/i18n.js';
import { api } from '/console/auth.js';
import { $, byIds, el, convLabel, categoryName, errorText, toast } from '/console/util.js';
import { renderCount, charCount } from '/console/counter.js';
import { command } from '/console/console/socket.js';
import { user, expire } from '/console/console/session.js';
import { getConv, currentConv, isSelected, renderTab, dropConv } from '/console/console/conversations.js';
import { renderPane } from '/console/console/pane.js';
import { stopTyping } from '/console/console/messages.js';
import { isOnDuty, setPresence } from '/console/console/presence.js';

const HELP_COOLDOWN_MS = 5000;

const E = {
  ...byIds('help-button', 'end-button', 'end-confirm', 'end-cancel', 'transfer-button',
    'transfer-dialog', 'transfer-form', 'transfer-for', 'transfer-target', 'transfer-status',
    'transfer-note', 'transfer-count', 'transfer-error', 'transfer-cancel', 'transfer-submit'),
  endBar: $('#end-confirm-bar'),
  wrapForm: $('#wrapup-form'),
  wrapCategory: $('#wrapup-category'),
  wrapSubmit: $('#wrapup-submit'),
};

let categories = [];

function askHelp() {
  const conv = currentConv();
  if (!conv) return;
  conv.helpAt = Date.now();
  renderHelpButton();
  command('help', { conversation: conv.id }, {
    onAck: () => { toast(t('help.sent'), 'success'); },
    onError: (e) => {
      conv.helpAt = 0;
      renderHelpButton();
      toast(e.code === 'not_connected' ? t('error.notConnected') : errorText(e.code), 'error');
    },
  });
}

export function renderHelpButton() {
  const conv = currentConv();
  E.helpButton.disabled = !conv || Date.now() - (conv.helpAt || 0) < HELP_COOLDOWN_MS;
}

function endAsk() {
  const conv = currentConv();
  if (!conv || conv.summary.state !== 'active') return;
  conv.endConfirm = true;
  E.endBar.hidden = false;
  E.endConfirm.focus();
}

function endCancel() {
  const conv = currentConv();
  if (conv) conv.endConfirm = false;
  E.endBar.hidden = true;
  E.endButton.focus();
}

function endConfirmed() {
  const conv = currentConv();
  if (!conv) return;
  conv.endConfirm = false;
  E.endBar.hidden = true;
  E.endConfirm.disabled = true;
  stopTyping(conv);
  command('end', { conversation: conv.id }, {
    onAck: () => {
      E.endConfirm.disabled = false;
      if (conv.summary.state === 'active') {
        conv.summary.state = 'wrap_up';
        renderTab(conv);
        if (isSelected(conv.id)) renderPane();
      }
      if (isSelected(conv.id)) E.wrapCategory.focus();
    },
    onError: (e) => { E.endConfirm.disabled = false; toast(e.code === 'not_connected' ? t('error.notConnected') : errorText(e.code), 'error'); },
  });
}

/** The welcome's wrap-up categories. */
export function setCategories(list) {
  categories = list;
  renderCategories();
}

export function renderCategories() {
  const current = E.wrapCategory.value;
  const first = E.wrapCategory.options[0];
  E.wrapCategory.replaceChildren(first);
  for (const c of categories) E.wrapCategory.append(el('option', { value: c, text: categoryName(c) }));
  if (categories.includes(current)) E.wrapCategory.value = current;
}

/** Back in wrap-up: the category chosen before for this conversation, if none is chosen now. */
export function wrapChoiceFor(conv) {
  if (!E.wrapCategory.value && conv.wrapChoice) E.wrapCategory.value = conv.wrapChoice;
}

function submitWrapUp(e) {
  e.preventDefault();
  const conv = currentConv();
  if (!conv) return;
  const category = E.wrapCategory.value;
  if (!category) { E.wrapCategory.focus(); E.wrapCategory.setAttribute('aria-invalid', 'true'); return; }
  E.wrapCategory.removeAttribute('aria-invalid');
  E.wrapSubmit.disabled = true;
  conv.wrapChoice = category;
  command('wrap_up', { conversation: conv.id, category }, {
    onAck: () => {
      E.wrapSubmit.disabled = false;
      E.wrapCategory.value = '';
      conv.closingLocally = true;
      toast(t('wrapup.done'), 'success', {
        timeout: 12000,
        // A flagged conversation gets the pause offer (`removed.suggest_pause`) instead.
        action: isOnDuty() && !conv.everFlagged ? { label: t('wrapup.rest'), run: () => setPresence('away') } : null,
      });
      // The server also sends `removed`; do not wait for it.
      dropConv(conv.id);
    },
    onError: (err) => { E.wrapSubmit.disabled = false; toast(err.code === 'not_connected' ? t('error.notConnected') : errorText(err.code), 'error'); },
  });
}

// ---------------------------------------------------------------- transfer

async function openTransfer() {
  const conv = currentConv();
  if (!conv || conv.summary.state !== 'active') return;
  E.transferDialog.dataset.conversation = conv.id;
  setText(E.transferFor, 'transfer.for', { label: convLabel(conv.id) });
  E.transferNote.value = '';
  E.transferError.hidden = true;
  updateTransferCount();
  const queueOption = el('option', { value: '', i18n: ['transfer.queue'] });
  E.transferTarget.replaceChildren(queueOption);
  E.transferTarget.value = '';
  E.transferSubmit.disabled = false;
  setText(E.transferStatus, 'transfer.loading');
  if (typeof E.transferDialog.showModal === 'function') E.transferDialog.showModal();
  else E.transferDialog.setAttribute('open', '');
  E.transferTarget.focus();
  const r = await api('/api/colleagues');
  if (E.transferDialog.dataset.conversation !== conv.id) return;
  if (r.status === 401) { closeTransfer(); expire(); return; }
  if (!r.ok || !Array.isArray(r.data)) {
    setText(E.transferStatus, r.network ? 'login.network' : 'error.http', { status: r.status });
    return;
  }
  const me = user();
  const colleagues = r.data.filter((c) => c && c.id && (!me || c.id !== me.id));
  for (const c of colleagues) {
    const full = Number.isFinite(c.capacity) && Number.isFinite(c.load) && c.load >= c.capacity;
    const stateLabel = c.state && ['on_duty', 'away', 'off_duty'].includes(c.state) ? t(`presence.${c.state}`) : (c.state || '');
    E.transferTarget.append(el('option', {
      value: c.id,
      text: t('transfer.colleague', { name: c.name || '?', state: stateLabel, load: c.load ?? '?', capacity: c.capacity ?? '?' }),
      data: { full: full ? 'true' : 'false' },
    }));
  }
  if (colleagues.length === 0) setText(E.transferStatus, 'transfer.noColleagues');
  else { E.transferStatus.textContent = ''; delete E.transferStatus.dataset.i18n; }
}

function closeTransfer() {
  delete E.transferDialog.dataset.conversation;
  if (E.transferDialog.open) {
    if (typeof E.transferDialog.close === 'function') E.transferDialog.close();
    else E.transferDialog.removeAttribute('open');
  }
}

function updateTransferCount() {
  renderCount(E.transferCount, E.transferNote.value, maxNote());
}

function submitTransfer(e) {
  e.preventDefault();
  const id = E.transferDialog.dataset.conversation;
  const conv = id && getConv(id);
  if (!conv) { closeTransfer(); return; }
  const note = E.transferNote.value.trim();
  if (charCount(note) > maxNote()) {
    setText(E.transferError, 'error.text_too_long');
    E.transferError.hidden = false;
    return;
  }
  const to = E.transferTarget.value || null;
  E.transferSubmit.disabled = true;
  stopTyping(conv);
  command('transfer', { conversation: conv.id, to, note }, {
    onAck: () => {
      E.transferSubmit.disabled = false;
      closeTransfer();
      conv.closingLocally = true;
      toast(t('transfer.done'), 'success');
    },
    onError: (err) => {
      E.transferSubmit.disabled = false;
      E.transferError.textContent = err.code === 'not_connected' ? t('error.notConnected') : errorText(err.code);
      delete E.transferError.dataset.i18n;
      E.transferError.hidden = false;
    },
  });
}

E.helpButton.addEventListener('click', askHelp);
E.endButton.addEventListener('click', endAsk);
E.endCancel.addEventListener('click', endCancel);
E.endConfirm.addEventListener('click', endConfirmed);
E.wrapForm.addEventListener('submit', submitWrapUp);
E.wrapCategory.addEventListener('change', () => E.wrapCategory.removeAttribute('aria-invalid'));
E.transferButton.addEventListener('click', openTransfer);
E.transferForm.addEventListener('submit', submitTransfer);
E.transferCancel.addEventListener('click', closeTransfer);
E.transferDialog.addEventListener('close', () => { delete E.transferDialog.dataset.conversation; });
E.transferNote.addEventListener('input', updateTransferCount);
