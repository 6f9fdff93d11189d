// The conversations this operator holds: the map of them, their tab order, which one is shown,
// and which one to show when it arrives (after accept or take_next). Draws the tabs and the page
// title (unread messages and waiting offers). A conversation (newConv) carries its own message
// list, outbox of unconfirmed messages, draft and typing state; messages.js fills those in.

import { t } from '/console/i18n.js';
import { $, byIds, el, convLabel, fmtDuration, toMs, channelName, langName, toast } from '/console/util.js';
import { untrack } from '/console/console/socket.js';
import { renderPane, scrollToEnd } from '/console/console/pane.js';
import { markRead, stopTyping } from '/console/console/messages.js';
import { removeOffer, offerCount, hasOffer } from '/console/console/offers.js';
import { emergencyOpen, onEmergencyChange, closeFlagFor } from '/console/console/emergency.js';
import { offerPause } from '/console/console/presence.js';
import { toolsOpen, renderPhrases } from '/console/console/tools.js';

const E = {
  ...byIds('tabs-empty', 'messages-host'),
  tabs: $('#conv-tabs'),
  input: $('#message-input'),
};

const convs = new Map();    // conversation id -> conv (see newConv)
let order = [];             // conversation ids in tab order
let selected = null;
let selectNext = false;     // select the next conversation that arrives (take_next)
let selectId = null;        // select this conversation when it arrives (accept)

export function getConv(id) { return convs.get(id); }
export function allConvs() { return convs.values(); }
export function isSelected(id) { return selected === id; }
export function currentConv() { return selected ? convs.get(selected) || null : null; }

/** take_next: show whichever conversation arrives next (or stop waiting for it). */
export function selectNextArrival(on) { selectNext = on; }
/** accept: show this conversation when it arrives (null: stop waiting). */
export function selectOnArrival(id) { selectId = id; }
export function awaitingArrival(id) { return selectId === id; }

/** conversation id -> last seq held, for `hello`. */
export function lastSeqs() {
  const out = {};
  for (const conv of convs.values()) out[conv.id] = conv.lastSeq;
  return out;
}

function newConv(id) {
  const list = el('ol', { class: 'messages', data: { testid: 'messages', conversation: id }, 'aria-live': 'polite', 'aria-relevant': 'additions' });
  return {
    id,
    summary: { id, state: 'active' },
    lastSeq: 0,          // highest seq rendered
    readSeq: 0,          // highest seq acknowledged (read) by us
    visitorSeqs: [],     // seqs of visitor messages not yet read
    list,
    outbox: new Map(),   // client id -> { id, text, li, failed, acked }
    draft: '',
    tab: null,
    remoteTyping: false,
    remoteTypingAt: 0,
    typingSent: false,
    lastTypingSent: 0,
    typingIdle: null,
    endConfirm: false,
  };
}

export function upsertConv(s) {
  if (!s || !s.id) return;
  let conv = convs.get(s.id);
  let isNew = false;
  if (!conv) {
    if (s.state === 'offered') return; // shown as an offer card, not a tab
    conv = newConv(s.id);
    convs.set(s.id, conv);
    order.push(s.id);
    isNew = true;
  }
  const prevState = conv.summary.state;
  const wasOpen = emergencyOpen(conv);
  conv.summary = { ...conv.summary, ...s };
  if (conv.summary.emergency) conv.everFlagged = true;
  if (!isNew && wasOpen !== emergencyOpen(conv)) onEmergencyChange(conv);
  if (s.state !== 'offered') removeOffer(s.id);
  if (prevState !== conv.summary.state && conv.summary.state !== 'wrap_up') conv.endConfirm = false;
  renderTab(conv);
  if (isNew && (selectNext || selectId === s.id || !selected)) {
    selectNext = false;
    if (selectId === s.id) selectId = null;
    selectConv(s.id);
  } else if (selected === s.id) {
    renderPane();
  }
  E.tabsEmpty.hidden = convs.size > 0;
}

/** A welcome lists the live conversations: drop the others, update the rest. */
export function syncConversations(summaries) {
  const live = new Set(summaries.filter((s) => s && s.state !== 'offered').map((s) => s.id));
  for (const id of [...convs.keys()]) {
    if (!live.has(id)) {
      toast(t('removed.gone', { label: convLabel(id) }), 'info');
      dropConv(id);
    }
  }
  for (const s of summaries) upsertConv(s);
}

export function onRemoved(m) {
  const conv = convs.get(m.conversation);
  removeOffer(m.conversation);
  // After a flagged conversation closes the server suggests a pause (it may come after our own
  // wrap-up already dropped the conversation).
  if (m.suggest_pause === true) offerPause();
  if (!conv) return;
  const reason = ['closed', 'transferred', 'requeued'].includes(m.reason) ? m.reason : 'closed';
  if (!conv.closingLocally) toast(t(`removed.${reason}`, { label: convLabel(conv.id) }), 'info');
  dropConv(conv.id);
}

/**
 * `gone`: the service lost this conversation (its store was restarted or emptied) without it
 * ending. Nothing more can be sent or received in it; the person has been told and offered a new
 * start. The notice stays until dismissed (an alert, not a passing status), so a counsellor who
 * was mid-reply understands why the conversation vanished.
 */
export function onGone(m) {
  const id = m.conversation;
  if (!id) return;
  const offered = hasOffer(id);
  removeOffer(id);
  const conv = convs.get(id);
  if (!conv && !offered) return;
  toast(t('removed.lost', { label: convLabel(id) }), 'error', { timeout: 0 });
  if (conv) dropConv(id);
}

export function dropConv(id) {
  const conv = convs.get(id);
  if (!conv) return;
  clearTimeout(conv.typingIdle);
  for (const p of conv.outbox.values()) untrack(p.id);
  closeFlagFor(id);
  conv.list.remove();
  if (conv.tab) conv.tab.remove();
  convs.delete(id);
  order = order.filter((x) => x !== id);
  if (selected === id) {
    selected = null;
    const next = order[0];
    if (next) selectConv(next);
    else renderPane();
  }
  E.tabsEmpty.hidden = convs.size > 0;
  updateTitle();
}

/** Logout: everything held in memory goes. */
export function dropAllConversations() {
  for (const id of [...convs.keys()]) dropConv(id);
  selected = null;
  selectNext = false;
  selectId = null;
  order = [];
}

export function selectConv(id) {
  const prev = currentConv();
  if (prev && prev.id !== id) {
    prev.draft = E.input.value;
    stopTyping(prev);
  }
  if (!convs.has(id)) return;
  const changed = selected !== id;
  selected = id;
  const conv = currentConv();
  if (changed) {
    E.input.value = conv.draft;
    E.messagesHost.replaceChildren(conv.list);
  }
  renderTabs();
  renderPane();
  if (changed) {
    scrollToEnd(conv, true);
    if (toolsOpen() === 'phrases') renderPhrases(); // phrases in the conversation's language first
  }
  markRead(conv);
}

export function renderTabs() {
  for (const id of order) {
    const conv = convs.get(id);
    if (conv) renderTab(conv);
  }
  E.tabsEmpty.hidden = convs.size > 0;
}

function unreadCount(conv) {
  return conv.visitorSeqs.filter((s) => s > conv.readSeq).length;
}

export function renderTab(conv) {
  if (!conv.tab) {
    const tab = el('button', {
      type: 'button', role: 'tab', class: 'conv-tab', id: `tab-${conv.id}`,
      'aria-controls': 'chat-pane', data: { testid: 'conversation-tab', conversation: conv.id, unread: 0 },
    });
    tab.append(
      el('span', { class: 'tab-label' },
        el('span', { data: { role: 'label' } }),
        el('span', { class: 'tab-emergency', data: { role: 'emergency' }, i18n: ['emergency.tab'], hidden: true })),
      el('span', { class: 'tab-unread', data: { role: 'unread' }, hidden: true }),
      el('span', { class: 'tab-meta small', data: { role: 'meta' } }),
      el('span', { class: 'tab-timer small timer', data: { role: 'timer' } }),
    );
    tab.addEventListener('click', () => selectConv(conv.id));
    tab.addEventListener('keydown', onTabKey);
    conv.tab = tab;
    E.tabs.append(tab);
  }
  const s = conv.summary;
  const tab = conv.tab;
  const unread = unreadCount(conv);
  const isCurrent = selected === conv.id;
  tab.dataset.unread = String(unread);
  tab.dataset.state = s.state || 'active';
  tab.setAttribute('aria-selected', isCurrent ? 'true' : 'false');
  tab.tabIndex = isCurrent || (!selected && order[0] === conv.id) ? 0 : -1;
  tab.classList.toggle('has-unread', unread > 0);
  const emergency = emergencyOpen(conv);
  if (emergency) tab.dataset.emergency = 'true'; else delete tab.dataset.emergency;
  tab.querySelector('[data-role="emergency"]').hidden = !emergency;
  tab.querySelector('[data-role="label"]').textContent = convLabel(conv.id);
  const badge = tab.querySelector('[data-role="unread"]');
  badge.hidden = unread === 0;
  badge.textContent = String(unread);
  badge.setAttribute('aria-label', t('conv.unread', { n: unread }));
  const meta = [channelName(s.channel), langName(s.language)];
  if (s.state && s.state !== 'active') meta.push(t(`conv.state.${s.state}`));
  tab.querySelector('[data-role="meta"]').textContent = meta.join(' · ');
  updateTabTimer(conv);
}

function updateTabTimer(conv) {
  if (!conv.tab) return;
  const started = toMs(conv.summary.started_at);
  conv.tab.querySelector('[data-role="timer"]').textContent = Number.isFinite(started) ? fmtDuration(Date.now() - started) : '';
}

/** Once a second: the tabs' running times. */
export function tickTabs() {
  for (const conv of convs.values()) updateTabTimer(conv);
}

function onTabKey(e) {
  const tabs = Array.from(E.tabs.querySelectorAll('[role="tab"]'));
  const i = tabs.indexOf(e.currentTarget);
  let j = -1;
  if (e.key === 'ArrowDown' || e.key === 'ArrowRight') j = (i + 1) % tabs.length;
  else if (e.key === 'ArrowUp' || e.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
  else if (e.key === 'Home') j = 0;
  else if (e.key === 'End') j = tabs.length - 1;
  if (j < 0) return;
  e.preventDefault();
  tabs[j].focus();
  selectConv(tabs[j].dataset.conversation);
}

export function updateTitle() {
  let unread = 0;
  for (const c of convs.values()) unread += unreadCount(c);
  const n = unread + offerCount();
  const base = `${t('app.name')} ${t('app.subtitle')}`;
  document.title = n > 0 ? `(${n}) ${base}` : base;
}
