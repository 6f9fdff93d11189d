// Writing: the message box (Enter sends on a computer, never while an IME is composing; the
// button sends on a phone), its character counter near the limit, typing notices both ways, and
// the error line under the box. Owns the typing state and its timers.

import { ulid } from '/console/ulid.js';
import { charCount } from '/console/counter.js';
import { $, coarsePointer } from './dom.js';
import { t } from './texts.js';
import { wsSend } from './socket.js';
import { maxText, maxFrame, isEnded, queueOwn } from './conversation.js';
import { screen } from './lifecycle.js';
import { scrollToBottom } from './messages.js';

const COUNTER_FROM = 3500;      // show the character counter near the limit
const TYPING_THROTTLE_MS = 3000;
const TYPING_IDLE_MS = 5000;
const TYPING_REMOTE_TIMEOUT_MS = 15000;

let typingActive = false;
let typingSentAt = 0;
let typingIdleTimer = null;
let remoteTypingTimer = null;
let errorTimer = null;

function utf8Length(s) {
  if (window.TextEncoder) return new TextEncoder().encode(s).length;
  return unescape(encodeURIComponent(s)).length;
}

/** The server trims with Rust's str::trim (Unicode White_Space); \s is close enough. */
export function trimText(s) { return s.replace(/^\s+|\s+$/g, ''); }

function sendMessage() {
  if (isEnded() || screen() !== 'chat') return;
  const input = $('message-input');
  const text = trimText(input.value);
  if (!text) return;
  if (charCount(text) > maxText()) {
    showError('text_too_long');
    return;
  }
  const item = { id: ulid(), text, at: Date.now() };
  if (utf8Length(JSON.stringify({ type: 'send', id: item.id, text })) > maxFrame()) {
    showError('text_too_long');
    return;
  }
  queueOwn(item, () => {
    scrollToBottom();
    input.value = '';
    autoGrow();
    updateCounter();
    stopTyping();
  });
  input.focus();
}

export function updateCounter() {
  const input = $('message-input');
  const el = $('char-count');
  if (!input || !el) return;
  const n = charCount(trimText(input.value));
  const max = maxText();
  const over = n > max;
  el.hidden = n < COUNTER_FROM;
  el.classList.toggle('is-over', over);
  el.textContent = over ? t('char_over', { over: n - max, max }) : t('char_count', { count: n, max });
  $('send-button').disabled = over;
}

export function autoGrow() {
  const input = $('message-input');
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight + 2, 180)}px`;
}

function sendTyping(active) {
  if (wsSend({ type: 'typing', id: ulid(), active })) {
    typingActive = active;
    typingSentAt = Date.now();
  }
}

function onTypingInput() {
  if (!trimText($('message-input').value)) { stopTyping(); return; }
  const now = Date.now();
  // At most one typing frame every 3 s; "true" is refreshed while the person keeps writing.
  if (now - typingSentAt >= TYPING_THROTTLE_MS) sendTyping(true);
  clearTimeout(typingIdleTimer);
  typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

export function stopTyping() {
  clearTimeout(typingIdleTimer);
  typingIdleTimer = null;
  if (typingActive) sendTyping(false);
  typingActive = false;
}

/** The socket closed: the server forgets our typing with it. */
export function typingLost() { typingActive = false; }

/** The conversation is over: no more typing notices. */
export function stopTypingTimers() { clearTimeout(typingIdleTimer); }

export function showRemoteTyping(active) {
  clearTimeout(remoteTypingTimer);
  $('typing-indicator').hidden = !active;
  if (active) {
    // If the "false" never arrives (operator vanished), do not show it forever.
    remoteTypingTimer = setTimeout(() => { $('typing-indicator').hidden = true; }, TYPING_REMOTE_TIMEOUT_MS);
  }
}

export function showError(code, sticky, vars) {
  const el = $('chat-error');
  let text = t(`error_${code}`) || t('error_generic');
  text = text.replace('{max}', String(maxText()));
  if (vars) Object.keys(vars).forEach((k) => { text = text.replace(`{${k}}`, String(vars[k])); });
  el.textContent = text;
  el.hidden = false;
  clearTimeout(errorTimer);
  if (!sticky) errorTimer = setTimeout(() => { el.hidden = true; }, 8000);
}

$('composer').addEventListener('submit', (e) => { e.preventDefault(); sendMessage(); });
const input = $('message-input');
input.addEventListener('keydown', (e) => {
  if (e.key !== 'Enter' || e.shiftKey || e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.isComposing || e.keyCode === 229) return; // Enter confirming a Japanese IME conversion
  if (coarsePointer.matches) return; // phones: Enter is a new line, the button sends
  e.preventDefault();
  sendMessage();
});
input.addEventListener('input', () => {
  autoGrow();
  updateCounter();
  onTypingInput();
});
input.addEventListener('blur', () => {
  if (!trimText(input.value)) stopTyping();
});
