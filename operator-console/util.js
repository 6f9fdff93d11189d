// Small DOM and formatting helpers shared by the console, coordinator view and setup page.
import { t, has, setText } from '/console/i18n.js';

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
/** The elements with these ids, named in camelCase ('flag-reason' -> flagReason). */
export function byIds(...ids) {
  const out = {};
  for (const id of ids) out[id.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = document.getElementById(id);
  return out;
}
export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

/**
 * el('li', {class: 'x', data: {testid: 'message'}, text: 'hi', i18n: ['key', vars]}, child, …)
 * Text is always set with textContent, never parsed as HTML.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'i18n') setText(node, v[0], v[1]);
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = String(dv);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Short label code for a conversation: last 3 characters of its ULID (the random part). */
export function shortCode(id) {
  return typeof id === 'string' && id.length >= 3 ? id.slice(-3).toUpperCase() : '???';
}
export function convLabel(id) { return t('conv.label', { code: shortCode(id) }); }

/** m:ss, or h:mm:ss from one hour. */
export function fmtDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** mm:ss (always two-digit minutes; hours fold into minutes). */
export function fmtMmSs(ms) {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const total = Math.floor(ms / 1000);
  return `${String(Math.floor(total / 60)).padStart(2, '0')}:${String(total % 60).padStart(2, '0')}`;
}

export function fmtClock(ts, seconds = false) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return seconds ? `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}` : `${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** YYYY-MM-DD HH:MM (local time), for records that outlive the day. */
export function fmtDateTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** Accept epoch milliseconds, epoch seconds or an ISO string. */
export function toMs(v) {
  if (typeof v === 'number') return v < 1e11 ? v * 1000 : v;
  if (typeof v === 'string') { const n = Date.parse(v); return Number.isNaN(n) ? NaN : n; }
  return NaN;
}

/** Length in Unicode scalar values (what the server counts). */
export { charCount } from '/console/counter.js';

export function channelName(ch) { return has(`channel.${ch}`) ? t(`channel.${ch}`) : String(ch || '?'); }
export function langName(code) {
  if (!code) return '?';
  if (has(`langname.${code}`)) return t(`langname.${code}`);
  const base = String(code).split(/[-_]/)[0];
  return has(`langname.${base}`) ? `${t(`langname.${base}`)} (${code})` : String(code);
}
export function categoryName(c) { return has(`category.${c}`) ? t(`category.${c}`) : String(c); }

/** Emergency flag categories (closed set, docs/protocol.md "Emergency flag and escalation"). */
export const EMERGENCY_CATEGORIES = ['self_harm', 'harm_to_others', 'abuse_dv', 'medical', 'crime', 'other'];
export function flagCategoryName(c) { return has(`flagcat.${c}`) ? t(`flagcat.${c}`) : String(c ?? '?'); }

export function errorText(code, context) {
  if (context && has(`error.${code}.${context}`)) return t(`error.${code}.${context}`);
  if (has(`error.${code}`)) return t(`error.${code}`);
  return t('error.unknown', { code: String(code || '?') });
}

/** Toast notifications in #toasts. kind: info | success | error. */
export function toast(text, kind = 'info', { timeout = 7000, action } = {}) {
  const host = document.getElementById('toasts');
  if (!host) return null;
  const item = el('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', data: { testid: 'toast' } });
  item.append(el('span', { class: 'toast-text', text }));
  if (action) {
    item.append(el('button', { type: 'button', class: 'btn btn-small', text: action.label, on: { click: () => { action.run(); item.remove(); } } }));
  }
  const close = el('button', { type: 'button', class: 'toast-close', 'aria-label': t('toast.close'), text: '×' });
  close.addEventListener('click', () => item.remove());
  item.append(close);
  host.append(item);
  while (host.children.length > 5) host.firstElementChild.remove();
  if (timeout) setTimeout(() => item.remove(), timeout);
  return item;
}

export function show(node, visible) { if (node) node.hidden = !visible; }
