// The chat pane of the conversation shown: its header, notices, the composer or the wrap-up
// form, the remote typing indicator, the input's character counter and scrolling. Holds no
// state of its own: it draws the current conversation (conversations.js).

import { t } from '/console/i18n.js';
import { $, byIds, fmtDuration, toMs, channelName, langName, convLabel } from '/console/util.js';
import { charCount } from '/console/counter.js';
import { currentConv, isSelected } from '/console/console/conversations.js';
import { renderEmergency } from '/console/console/emergency.js';
import { renderHelpButton, wrapChoiceFor } from '/console/console/actions.js';
import { closeTools } from '/console/console/tools.js';

import { maxText } from '/console/console/limits.js';

const REMOTE_TYPING_EXPIRE_MS = 10000;

const E = {
  ...byIds('pane-empty', 'pane-title', 'pane-channel', 'pane-lang', 'pane-duration', 'pane-state',
    'pane-visitor-gone', 'pane-handover', 'pane-handover-text', 'pane-phone', 'transfer-button',
    'end-button', 'messages-host', 'composer', 'input-count'),
  pane: $('#chat-pane'),
  endBar: $('#end-confirm-bar'),
  typing: $('#typing-indicator'),
  input: $('#message-input'),
  wrapForm: $('#wrapup-form'),
};

export function renderPane() {
  const conv = currentConv();
  E.paneEmpty.hidden = !!conv;
  E.pane.hidden = !conv;
  if (!conv) {
    E.pane.dataset.conversation = '';
    E.messagesHost.replaceChildren();
    closeTools();
    renderEmergency(null);
    return;
  }
  const s = conv.summary;
  E.pane.dataset.conversation = conv.id;
  E.pane.setAttribute('aria-labelledby', 'pane-title');
  E.paneTitle.textContent = convLabel(conv.id);
  E.paneChannel.textContent = channelName(s.channel);
  E.paneLang.textContent = langName(s.language);
  E.paneState.textContent = t(`conv.state.${s.state || 'active'}`);
  E.paneState.dataset.state = s.state || 'active';
  updatePaneTimer();
  E.paneVisitorGone.hidden = s.visitor_connected !== false || s.state !== 'active';
  const note = s.handover_note || conv.transferNote || '';
  E.paneHandover.hidden = !note;
  E.paneHandoverText.textContent = note;
  E.panePhone.hidden = s.channel !== 'phone';
  renderEmergency(conv);

  const wrap = s.state === 'wrap_up';
  // A call is talked on the phone: no chat input, only the notice (the timer is in the header).
  E.composer.hidden = wrap || s.channel === 'phone';
  E.wrapForm.hidden = !wrap;
  E.transferButton.disabled = wrap;
  E.endButton.disabled = wrap;
  E.endBar.hidden = wrap || !conv.endConfirm;
  if (wrap) {
    closeTools();
    wrapChoiceFor(conv);
  }
  renderTyping();
  renderHelpButton();
  updateInputCount();
}

export function updatePaneTimer() {
  const conv = currentConv();
  if (!conv) return;
  const started = toMs(conv.summary.started_at);
  E.paneDuration.textContent = Number.isFinite(started) ? t('pane.duration', { time: fmtDuration(Date.now() - started) }) : '';
}

export function renderTyping() {
  const conv = currentConv();
  const on = !!conv && conv.remoteTyping && Date.now() - conv.remoteTypingAt < REMOTE_TYPING_EXPIRE_MS && conv.summary.state === 'active';
  E.typing.hidden = !on;
}

/** The composer's counter: shown once there is text, with a warning past the limit. */
export function updateInputCount() {
  const n = charCount(E.input.value.trim());
  E.inputCount.textContent = n > 0 ? t('input.count', { n, max: maxText() }) : '';
  const over = n > maxText();
  E.inputCount.classList.toggle('over', over);
  E.input.setAttribute('aria-invalid', over ? 'true' : 'false');
  if (over) E.inputCount.textContent += ` ${t('input.tooLong', { max: maxText() })}`;
}

/** The chat input can take text now (a conversation is shown and not in wrap-up or a call). */
export function composerOpen() {
  return !E.pane.hidden && !E.composer.hidden;
}

export function isNearBottom(conv) {
  if (!isSelected(conv.id)) return true;
  const host = E.messagesHost;
  return host.scrollHeight - host.scrollTop - host.clientHeight < 80;
}

export function scrollToEnd(conv, instant) {
  if (!isSelected(conv.id)) return;
  const host = E.messagesHost;
  requestAnimationFrame(() => { host.scrollTop = host.scrollHeight; });
  if (instant) host.scrollTop = host.scrollHeight;
}
