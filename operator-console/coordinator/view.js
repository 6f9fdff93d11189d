// Small helpers shared by the coordinator view's panels (lists loaded with their status line,
// tables kept in order, live "since" cells, status lines, readable HTTP errors).

import { t, has, setText } from '/console/i18n.js';
import { api } from '/console/auth.js';
import { fmtClock, fmtDuration, flagCategoryName } from '/console/util.js';
import { isStopped, expire } from '/console/coordinator/session.js';

export function categoriesText(list) {
  return (Array.isArray(list) ? list : []).map((c) => flagCategoryName(c)).join('、');
}

export function hasValue(v) { return v !== null && v !== undefined && v !== ''; }

/** Reorder only when the order changed (moving nodes would re-announce them and drop focus). */
export function placeInOrder(host, wanted) {
  const current = Array.from(host.children);
  if (wanted.length === current.length && wanted.every((node, i) => node === current[i])) return;
  const focused = document.activeElement;
  host.replaceChildren(...wanted);
  if (focused && host.contains(focused)) focused.focus();
}

/** Cells whose data-since holds a time get "hh:mm (elapsed)" or the elapsed time, every second. */
export function updateSince(root) {
  const now = Date.now();
  for (const node of root.querySelectorAll('[data-since]')) {
    const at = Number(node.dataset.since);
    if (!Number.isFinite(at)) { node.textContent = '—'; continue; }
    node.textContent = node.dataset.sinceFormat === 'clock'
      ? t('coord.since', { time: fmtClock(at), ago: fmtDuration(now - at) })
      : fmtDuration(now - at);
  }
}

export function showStatus(node, key, vars) {
  if (!key) { node.hidden = true; node.textContent = ''; delete node.dataset.i18n; return; }
  setText(node, key, vars);
  node.hidden = false;
}

/**
 * GETs the list at `path` for a panel: its items, with `status` cleared and `updated` stamped;
 * or null when the view stopped meanwhile, the session expired, or no list came (said in
 * `status`).
 */
export async function fetchList(path, status, updated) {
  const r = await api(path);
  if (isStopped()) return null;
  if (r.status === 401) { expire(); return null; }
  if (!r.ok || !Array.isArray(r.data)) { showStatus(status, 'coord.loadError', { status: r.network ? '—' : r.status }); return null; }
  showStatus(status, null);
  updated.textContent = t('coord.updated', { time: fmtClock(Date.now(), true) });
  return r.data;
}

/** Readable text for a failed HTTP call (status, and a known code / error field in the body). */
export function httpErrorText(r) {
  if (r.network) return t('login.network');
  const code = r.data && typeof r.data === 'object' ? (r.data.code || r.data.error) : null;
  const base = has(`coord.err.${r.status}`) ? t(`coord.err.${r.status}`) : t('error.http', { status: r.status || '—' });
  return code && has(`coord.err.code.${code}`) ? `${base} ${t(`coord.err.code.${code}`)}` : base;
}
