// A conversation's life on screen: the three screens (welcome, chat, ended), starting, the
// "end?" confirm step, and the three ways it stops (ended, lost by the service, unknown to it),
// each with a plain explanation and a way forward. Owns which screen is shown.

import { $ } from './dom.js';
import { t, refreshHelplines } from './texts.js';
import { saveStore, wipeStore } from './store.js';
import { connect, setConn, resetConnection, closeForGood } from './socket.js';
import {
  isEnded, requestEnd as sendEnd, resetConversationState, finishConversationState, forgetConversation,
  startAgainState, endedText, renderQueue,
} from './conversation.js';
import { resetMessages, keepTranscript, forgetTranscript } from './messages.js';
import { stopTyping, stopTypingTimers, showRemoteTyping, updateCounter, autoGrow } from './composer.js';

let current = 'loading';

export function screen() { return current; }

export function showScreen(name, focus) {
  current = name;
  $('loading').hidden = true;
  document.documentElement.classList.remove('is-loading');
  $('screen-welcome').hidden = name !== 'welcome';
  $('screen-chat').hidden = name !== 'chat';
  $('screen-ended').hidden = name !== 'ended';
  document.documentElement.setAttribute('data-screen', name);
  if (focus) {
    const target = name === 'welcome' ? $('welcome-title') : name === 'chat' ? $('chat-title') : $('ended-title');
    try { target.focus({ preventScroll: false }); } catch (e) { target.focus(); }
  }
}

function resetConversation() {
  resetConversationState();
  resetConnection();
  resetMessages();
  $('message-input').value = '';
  $('chat-error').hidden = true;
  $('end-button').disabled = false;
  $('end-button').textContent = t('end_button');
  $('composer').hidden = false;
  showRemoteTyping(false);
  updateCounter();
  autoGrow();
}

function startChat() {
  if (current === 'chat') return;
  resetConversation();
  saveStore(); // the language only, until welcome gives a token
  showScreen('chat', true);
  renderQueue();
  setConn('reconnecting', 'connecting');
  connect();
}

/** After a reload with a stored conversation: the chat screen, reconnecting. */
export function resumeChat() {
  showScreen('chat', false);
  renderQueue();
  setConn('reconnecting');
  connect();
}

// The confirm step is a non-modal <dialog> over an overlay that stays below the top bar, so
// the quick exit button remains usable while it is open (a modal dialog would make it inert).
function requestEnd() {
  const dlg = $('end-dialog');
  if (typeof dlg.show !== 'function') { confirmEnd(); return; } // very old browsers
  if (!dlg.open) dlg.show();
  $('overlay').hidden = false;
  $('end-cancel').focus();
}

function closeEndDialog(returnFocus) {
  const dlg = $('end-dialog');
  if (dlg.open) dlg.close();
  $('overlay').hidden = true;
  if (returnFocus && !$('screen-chat').hidden) $('end-button').focus();
}

function confirmEnd() {
  closeEndDialog(false);
  if (isEnded()) return;
  stopTyping();
  $('end-button').disabled = true;
  $('end-button').textContent = t('ending');
  sendEnd();
}

/** An `end` asked for before a reload is still on its way: the button says so. */
export function showEnding() {
  $('end-button').disabled = true;
  $('end-button').textContent = t('ending');
}

export function conversationEnded(e) {
  showEnded('ended', 'ended_title', 'ended-body', (line) => {
    line.hidden = !e || e.by === 'visitor';
    line.textContent = e ? endedText(e) : '';
  });
}

export function conversationLost() {
  // Said plainly, with a way forward: the person may be in the middle of something hard, and
  // a silent page would read as being ignored. Other helplines are on the same screen.
  showEnded('gone', 'gone_title', 'gone-body');
}

export function conversationGone() {
  // Error not_found / close 4004: the token is unknown or the conversation was deleted.
  showEnded('not_found', 'notfound_title', 'notfound-body');
}

/**
 * Closes the conversation down and shows the ended screen for `reason` (its `data-reason`):
 * the title `titleKey`, the line saying who ended it as `reasonLine` sets it (hidden unless
 * told), and of the three explanations only `body`.
 */
function showEnded(reason, titleKey, body, reasonLine = (line) => { line.hidden = true; }) {
  finishConversation();
  $('ended-title').textContent = t(titleKey);
  reasonLine($('ended-reason'));
  for (const id of ['ended-body', 'notfound-body', 'gone-body']) $(id).hidden = id !== body;
  $('screen-ended').setAttribute('data-reason', reason);
  showScreen('ended', true);
  refreshHelplines();
}

/** Common close-down: timers, socket, storage; keeps a read-only copy of the transcript. */
function finishConversation() {
  finishConversationState();
  stopTypingTimers();
  closeForGood(null);
  showRemoteTyping(false);
  closeEndDialog(false);
  setConn('offline');
  wipeStore();
  forgetConversation();
  keepTranscript();
}

function startAgain() {
  startAgainState();
  forgetTranscript();
  showScreen('welcome', true);
}

$('start-button').addEventListener('click', startChat);
$('end-button').addEventListener('click', requestEnd);
$('end-confirm').addEventListener('click', confirmEnd);
$('end-cancel').addEventListener('click', () => { closeEndDialog(true); });
$('overlay').addEventListener('click', () => { closeEndDialog(true); });
$('end-dialog').addEventListener('keydown', (e) => {
  if (e.key === 'Escape' || e.key === 'Esc') closeEndDialog(true);
  if (e.key === 'Tab') {
    // Keep Tab between the two buttons while the confirm step is open.
    const a = $('end-cancel');
    const b = $('end-confirm');
    if (e.shiftKey && document.activeElement === a) { e.preventDefault(); b.focus(); }
    else if (!e.shiftKey && document.activeElement === b) { e.preventDefault(); a.focus(); }
  }
});
$('start-again').addEventListener('click', startAgain);
