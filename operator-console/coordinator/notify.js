// Browser notifications (the Notification API) for the coordinator on call: a new emergency
// flag, a new help request, and an alert condition the server raised (nobody on duty, a long
// wait, a node down, ...) show a system notification, so a coordinator whose tab is in the
// background or behind another window still learns of them. The in-page alerts and tones stay
// as they are; this adds to them.
//
// Owns: the toggle button, the coordinator's choice (kept in localStorage: on unless turned
// off), and which alerts and conditions were already notified. A notification says what
// happened, its category or count and when, never anything of the conversation or the person;
// its tag is the alert's id (or the condition and its start), so several open tabs show one.

import { t, getLang } from '/console/i18n.js';
import { fmtClock, flagCategoryName, toMs } from '/console/util.js';

const PREF_KEY = 'tsunagu.notifications';
const supported = typeof window !== 'undefined' && 'Notification' in window;

let primed = false;            // the first snapshot only marks what is already there
const notified = new Set();    // alert ids and condition episodes already shown
let renderButton = () => {};

function choice() {
  try { return localStorage.getItem(PREF_KEY) !== 'off'; } catch { return true; }
}

function setChoice(on) {
  try { localStorage.setItem(PREF_KEY, on ? 'on' : 'off'); } catch { /* private mode */ }
}

function enabled() {
  return supported && Notification.permission === 'granted' && choice();
}

/** Wires the toggle button; returns its render function (for language changes). */
export function bindNotifyToggle(button) {
  if (!button) return () => {};
  if (!supported) { button.hidden = true; return () => {}; }
  const render = () => {
    const perm = Notification.permission;
    const on = perm === 'granted' && choice();
    button.hidden = false;
    button.disabled = perm === 'denied';
    button.dataset.state = perm === 'denied' ? 'blocked' : (on ? 'on' : 'off');
    button.setAttribute('aria-pressed', on ? 'true' : 'false');
    button.textContent = perm === 'denied' ? t('notify.blocked')
      : perm === 'granted' ? t(on ? 'notify.on' : 'notify.off') : t('notify.enable');
    button.title = perm === 'denied' ? t('notify.blockedHelp') : '';
  };
  button.addEventListener('click', async () => {
    if (Notification.permission === 'granted') {
      // As the coordinator saw it (permission may have been given since it was drawn).
      setChoice(button.dataset.state !== 'on');
    } else if (Notification.permission === 'default') {
      // Asked only on the coordinator's click, as browsers require.
      const perm = await Notification.requestPermission();
      if (perm === 'granted') setChoice(true);
    }
    render();
  });
  renderButton = render;
  render();
  return render;
}

function show(title, body, tag, urgent, onClickTarget) {
  if (!enabled()) return;
  try {
    const n = new Notification(title, { body, tag, lang: getLang(), requireInteraction: urgent });
    n.onclick = () => {
      window.focus();
      document.getElementById(onClickTarget)?.scrollIntoView({ block: 'start' });
      n.close();
    };
  } catch {
    // Some browsers allow notifications only from a service worker: the page's own alerts remain.
  }
}

function alertNotice(a) {
  const at = fmtClock(toMs(a.at));
  if (a.kind === 'emergency') {
    const body = a.category ? `${flagCategoryName(a.category)} · ${at}` : at;
    return [t('notify.emergency'), body, true, 'emergency-section'];
  }
  return [t('notify.help'), a.operator ? `${a.operator} · ${at}` : at, false, 'alerts'];
}

function conditionNotice(c) {
  const vars = { n: Number(c.value) || 0, threshold: Number(c.threshold) || 0 };
  const title = t(`notify.cond.${c.kind}`, vars);
  return [title === `notify.cond.${c.kind}` ? t('notify.cond.other', { kind: c.kind }) : title,
    fmtClock(toMs(c.since)), c.severity === 'critical', 'dash-view'];
}

/** Shows what is new in a dashboard snapshot: unacknowledged alerts and warning or critical conditions. */
export function notifySnapshot(s) {
  const alerts = Array.isArray(s.alerts) ? s.alerts.filter((a) => a && a.id) : [];
  const conditions = Array.isArray(s.conditions)
    ? s.conditions.filter((c) => c && c.kind && (c.severity === 'critical' || c.severity === 'warning'))
    : [];
  const fresh = [];
  for (const a of alerts) {
    const key = `alert:${a.id}`;
    if (notified.has(key)) continue;
    notified.add(key);
    if (a.acknowledged_by === null || a.acknowledged_by === undefined) fresh.push([key, alertNotice(a)]);
  }
  for (const c of conditions) {
    const key = `condition:${c.kind}:${toMs(c.since)}`;
    if (notified.has(key)) continue;
    notified.add(key);
    fresh.push([key, conditionNotice(c)]);
  }
  if (!primed) { primed = true; renderButton(); return; }   // what was there before the page opened
  for (const [key, [title, body, urgent, target]] of fresh) show(title, body, key, urgent, target);
}
