// The emergency flag dialog, one component shared by the console and the coordinator view: its
// markup, its two steps (check the input, then an explicit confirm, because a flag keeps an
// encrypted record past the conversation's close), the reason counter and the validation.
// What a confirmed flag does belongs to the page: the console sends a `flag` command over its
// socket, the coordinator view POSTs to the API. This module owns the dialog element and the one
// flag being edited (`current`); nothing else writes either.

import { t, setText, applyI18n } from '/console/i18n.js';
import { el, flagCategoryName, toast } from '/console/util.js';
import { renderCount, charCount } from '/console/counter.js';

const MARKUP = `
<dialog id="flag-dialog" class="dialog dialog-emergency" data-testid="flag-dialog" aria-labelledby="flag-heading">
  <form id="flag-form" novalidate>
    <h2 id="flag-heading" data-i18n="flag.title">緊急フラグを記録する</h2>
    <p id="flag-for"></p>
    <p class="notice small" data-i18n="flag.intro">命や身体に危険があり、本人の同意を得ることが難しいときにだけ使います。</p>
    <div id="flag-step-edit" class="flag-step">
      <label for="flag-category" data-i18n="flag.category">区分</label>
      <select id="flag-category" data-testid="flag-category" required>
        <option value="" data-i18n="flag.choose">選んでください</option>
      </select>
      <label for="flag-reason" data-i18n="flag.reason" data-i18n-vars='{"max":500}'>理由（500 文字まで・必須）</label>
      <textarea id="flag-reason" data-testid="flag-reason" rows="3" maxlength="500" required aria-describedby="flag-reason-hint flag-count"></textarea>
      <p class="small"><span id="flag-count" class="count">0 / 500</span></p>
      <p id="flag-reason-hint" class="muted small" data-i18n="flag.reasonHint">何が起きているかを短く書いてください。</p>
    </div>
    <div id="flag-step-confirm" class="flag-step flag-confirm-step" hidden>
      <h3 data-i18n="flag.confirmHeading">記録の確認</h3>
      <dl class="flag-summary">
        <dt data-i18n="flag.category">区分</dt><dd id="flag-summary-category"></dd>
        <dt data-i18n="flag.reasonShort">理由</dt><dd id="flag-summary-reason"></dd>
      </dl>
      <p id="flag-confirm-text" class="flag-confirm-text" data-testid="flag-confirm-text" data-i18n="flag.confirmText"></p>
    </div>
    <p id="flag-error" class="form-error" data-testid="flag-error" role="alert" hidden></p>
    <div class="dialog-actions">
      <button type="button" id="flag-cancel" class="btn" data-i18n="flag.cancel">キャンセル</button>
      <button type="button" id="flag-back" class="btn" data-i18n="flag.back" hidden>戻る</button>
      <button type="submit" id="flag-submit" class="btn btn-emergency" data-testid="flag-submit" data-i18n="flag.next">確認へ進む</button>
      <button type="button" id="flag-confirm" class="btn btn-emergency" data-testid="flag-confirm" aria-describedby="flag-confirm-text" data-i18n="flag.confirm" hidden>記録してコーディネーターに知らせる</button>
    </div>
  </form>
</dialog>`;

/** Shows a modal dialog (or just opens it where showModal is missing). */
export function openDialog(d) {
  if (d.open) return;
  if (typeof d.showModal === 'function') d.showModal(); else d.setAttribute('open', '');
}

export function closeDialog(d) {
  if (!d.open) return;
  if (typeof d.close === 'function') d.close(); else d.removeAttribute('open');
}

/** A form error: a message key (with vars) or a plain text; neither hides it. */
export function formError(node, key, vars, text) {
  if (!key && !text) { node.hidden = true; node.textContent = ''; delete node.dataset.i18n; return; }
  if (key) setText(node, key, vars); else { node.textContent = text; delete node.dataset.i18n; }
  node.hidden = false;
}

export function setInvalid(node, invalid) {
  if (invalid) node.setAttribute('aria-invalid', 'true'); else node.removeAttribute('aria-invalid');
}

/**
 * Puts the dialog into the page before `before` and wires it.
 *   maxReason       the reason's limit in characters (a number, or a function giving it)
 *   categories()    the categories to offer, in order
 *   onConfirm(f, { category, reason })  sends the flag; `f` is the flag being edited
 *     ({ conversation, busy, ... }: the page may keep its own fields on it) and is busy until
 *     the page calls done(f) or failed(f, text).
 */
export function mountFlagDialog(before, { maxReason: limit, categories, onConfirm }) {
  const maxReason = () => (typeof limit === 'function' ? limit() : limit);
  const tpl = document.createElement('template');
  tpl.innerHTML = MARKUP.trim();
  const dialog = tpl.content.firstElementChild;
  before.before(dialog);
  applyI18n(dialog);
  const q = (id) => dialog.querySelector(`#${id}`);
  const E = {
    form: q('flag-form'), heading: q('flag-heading'), forLabel: q('flag-for'),
    stepEdit: q('flag-step-edit'), stepConfirm: q('flag-step-confirm'),
    category: q('flag-category'), reason: q('flag-reason'), count: q('flag-count'),
    summaryCategory: q('flag-summary-category'), summaryReason: q('flag-summary-reason'),
    confirmText: q('flag-confirm-text'), error: q('flag-error'),
    cancel: q('flag-cancel'), back: q('flag-back'), submit: q('flag-submit'), confirm: q('flag-confirm'),
  };

  let current = null; // the flag being edited: { conversation, busy, hiddenWhileBusy, ... }

  function renderCategories() {
    const value = E.category.value;
    const first = E.category.options[0];
    const list = categories();
    E.category.replaceChildren(first);
    for (const c of list) E.category.append(el('option', { value: c, text: flagCategoryName(c) }));
    if (list.includes(value)) E.category.value = value;
  }

  function step(which) {
    const confirm = which === 'confirm';
    E.stepEdit.hidden = confirm;
    E.stepConfirm.hidden = !confirm;
    E.submit.hidden = confirm;
    E.confirm.hidden = !confirm;
    E.back.hidden = !confirm;
    E.confirm.disabled = false;
    E.back.disabled = false;
    E.submit.disabled = false;
    if (confirm) setText(E.confirmText, 'flag.confirmText');
  }

  const updateCount = () => renderCount(E.count, E.reason.value.trim(), maxReason());

  /** Opens the dialog for `conversation` (`adding`: it already has an open emergency). */
  function open(conversation, { label, adding }) {
    current = { conversation, busy: false };
    setText(E.heading, adding ? 'flag.titleAdd' : 'flag.title');
    setText(E.forLabel, 'flag.for', { label });
    renderCategories();
    E.category.value = '';
    E.reason.value = '';
    setInvalid(E.category, false);
    setInvalid(E.reason, false);
    updateCount();
    formError(E.error, null);
    step('edit');
    openDialog(dialog);
    E.category.focus();
  }

  /** Closes the dialog; a flag on its way stays tracked (its answer then shows as a toast). */
  function close(force) {
    if (current && current.busy && !force) current.hiddenWhileBusy = true;
    else current = null;
    closeDialog(dialog);
  }

  /** First button: check the input, then show the explicit confirm step. */
  function submitForm(e) {
    e.preventDefault();
    if (!current) return;
    if (!E.stepConfirm.hidden) { confirm(); return; }
    const category = E.category.value;
    const reason = E.reason.value.trim();
    setInvalid(E.category, !category);
    if (!category) { formError(E.error, 'flag.needCategory'); E.category.focus(); return; }
    const n = charCount(reason);
    setInvalid(E.reason, n === 0 || n > maxReason());
    if (n === 0) { formError(E.error, 'flag.needReason'); E.reason.focus(); return; }
    if (n > maxReason()) { formError(E.error, 'flag.reasonTooLong', { max: maxReason() }); E.reason.focus(); return; }
    formError(E.error, null);
    E.summaryCategory.textContent = flagCategoryName(category);
    E.summaryReason.textContent = reason;
    step('confirm');
    E.confirm.focus();
  }

  function back() {
    if (current && current.busy) return;
    formError(E.error, null);
    step('edit');
    E.reason.focus();
  }

  /** Second button: hand the flag to the page. */
  function confirm() {
    const f = current;
    if (!f || f.busy) return;
    const category = E.category.value;
    const reason = E.reason.value.trim();
    if (!category || !reason) { back(); return; }
    f.busy = true;
    E.confirm.disabled = true;
    E.back.disabled = true;
    formError(E.error, null);
    onConfirm(f, { category, reason });
  }

  E.form.addEventListener('submit', submitForm);
  E.confirm.addEventListener('click', confirm);
  E.back.addEventListener('click', back);
  E.cancel.addEventListener('click', () => close(false));
  dialog.addEventListener('close', () => {
    if (!current) return;
    if (current.busy) current.hiddenWhileBusy = true; // the answer will show as a toast
    else current = null;
  });
  E.reason.addEventListener('input', () => { updateCount(); setInvalid(E.reason, false); });
  E.category.addEventListener('change', () => setInvalid(E.category, false));
  renderCategories();

  return {
    open,
    close,
    renderCategories,
    /** Redraws what depends on the language. */
    refresh() { renderCategories(); if (current) updateCount(); },
    /** Closes the dialog if it is open for `conversation` (the conversation is gone). */
    closeFor(conversation) { if (current && current.conversation === conversation) close(true); },
    /** The flag was recorded: close the dialog if it is still the one shown. */
    done(f) { f.busy = false; if (current === f) close(true); },
    /** The flag failed with `text`: shown in the dialog if it is still open, else as a toast. */
    failed(f, text) {
      f.busy = false;
      if (current !== f || f.hiddenWhileBusy || !dialog.open) {
        if (current === f) current = null;
        toast(text, 'error', { timeout: 0 });
        return;
      }
      E.confirm.disabled = false;
      E.back.disabled = false;
      formError(E.error, null, null, text);
    },
  };
}
