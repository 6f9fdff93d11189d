// The on-call panel: who is on call now, the alerts paged to them (with Acknowledge), and the
// rota (weekly ranges in Japan time, overrides) and each person's channels (e-mail, webhook,
// phone, LINE on or off; whether their LINE account is linked, and unlinking it), edited through
// /api/oncall/* (coordinators and admins; every change is audited by the server), and a one-time
// code with which the signed-in coordinator links their own LINE account. Owns the last overview
// read and the paged alerts; reloaded every 30 s and after each change.

import { t } from '/console/i18n.js';
import { api } from '/console/auth.js';
import { byIds, el, fmtDateTime } from '/console/util.js';
import { httpErrorText } from '/console/coordinator/view.js';

const POLL_MS = 30000;
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const JST_MS = 9 * 3600 * 1000;

const E = byIds('oncall-section', 'oncall-status', 'oncall-updated', 'oncall-now', 'oncall-now-empty',
  'oncall-alerts', 'oncall-ranges', 'oncall-range-form', 'oncall-range-account', 'oncall-range-day',
  'oncall-range-from', 'oncall-range-until', 'oncall-range-pos', 'oncall-overrides',
  'oncall-override-form', 'oncall-override-account', 'oncall-override-from', 'oncall-override-until',
  'oncall-channels-form', 'oncall-channels-account', 'oncall-channels-email', 'oncall-channels-url',
  'oncall-channels-format', 'oncall-channels-secret', 'oncall-channels-phone', 'oncall-channels-line',
  'oncall-line-state', 'oncall-line-unlink', 'oncall-line-code', 'oncall-line-code-out');

let view = null;      // the last GET /api/oncall
let paged = [];       // the last GET /api/oncall/alerts
let timer = null;

/** Shows a failure's text, or clears it (`null`). */
function status(text) {
  E.oncallStatus.textContent = text ?? '';
  E.oncallStatus.hidden = !text;
}

const nameOf = (id) => (view?.accounts.find((a) => a.id === id)?.name) ?? '?';
const minutes = (hhmm) => { const [h, m] = hhmm.split(':').map(Number); return h * 60 + m; };
const hhmm = (m) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
/** A `datetime-local` value read as Japan time. */
const jstMs = (v) => Date.parse(`${v}:00Z`) - JST_MS;

function fillAccounts(select, keep) {
  const current = keep ? select.value : '';
  select.replaceChildren(...(view?.accounts ?? []).map((a) => el('option', { value: a.id, text: a.name })));
  if (current) select.value = current;
}

export function renderOncall() {
  if (!view) return;
  E.oncallNow.replaceChildren(...view.on_call.map((p) => el('li', { text: p.name })));
  E.oncallNowEmpty.hidden = view.on_call.length > 0;
  E.oncallRanges.replaceChildren(...view.schedule.map((r) => el('li', {},
    `${r.position}. ${nameOf(r.account)} — ${t(`oncall.day.${DAYS[r.weekday]}`)} ${hhmm(r.start_minute)}–${hhmm(r.end_minute)} `,
    el('button', { type: 'button', class: 'link', text: t('oncall.remove'), on: { click: () => removeRange(r.id) } }))));
  E.oncallOverrides.replaceChildren(...view.overrides.map((o) => el('li', {},
    `${nameOf(o.account)} — ${fmtDateTime(o.starts_at)} – ${fmtDateTime(o.ends_at)} `,
    el('button', { type: 'button', class: 'link', text: t('oncall.remove'), on: { click: () => removeOverride(o.id) } }))));
  for (const s of [E.oncallRangeAccount, E.oncallOverrideAccount, E.oncallChannelsAccount]) fillAccounts(s, true);
  E.oncallRangeDay.replaceChildren(...DAYS.map((d, i) => el('option', { value: i, text: t(`oncall.day.${d}`) })));
  E.oncallChannelsSecret.replaceChildren(el('option', { value: '', text: t('oncall.noSecret') }),
    ...view.webhook_secrets.map((s) => el('option', { value: s, text: s })));
  fillChannels();
  E.oncallAlerts.replaceChildren(...paged.map((a) => el('tr', { data: { alert: a.id } },
    el('td', { text: fmtDateTime(a.started_at) }),
    el('td', { text: `${a.kind} (${a.severity})` }),
    el('td', { text: String(a.level) }),
    el('td', {}, a.acknowledged_at
      ? `${a.acknowledged_by ?? ''} (${a.acknowledged_channel ?? ''})`
      : el('button', { type: 'button', text: t('coord.ack'), on: { click: () => ack(a.id) } })))));
}

function fillChannels() {
  const c = view?.channels.find((x) => x.account === E.oncallChannelsAccount.value) ?? {};
  E.oncallChannelsEmail.value = c.email ?? '';
  E.oncallChannelsUrl.value = c.webhook_url ?? '';
  E.oncallChannelsFormat.value = c.webhook_format ?? 'slack';
  E.oncallChannelsSecret.value = c.webhook_secret_ref ?? '';
  E.oncallChannelsPhone.value = c.phone ?? '';
  E.oncallChannelsLine.checked = c.line_enabled ?? true;
  const linked = (view?.line_linked ?? []).includes(E.oncallChannelsAccount.value);
  E.oncallLineState.textContent = t(linked ? 'oncall.line.linked' : 'oncall.line.notLinked');
  E.oncallLineUnlink.hidden = !linked;
  E.oncallLineCode.hidden = !view?.line_available;
  E.oncallChannelsPhone.hidden = !view?.phone_available;
}

let loadFailed = false; // the status line shows a failed load (the next good one clears it)

async function load() {
  const [v, a] = await Promise.all([api('/api/oncall'), api('/api/oncall/alerts')]);
  if (!v.ok || !a.ok) { status(httpErrorText(v.ok ? a : v)); loadFailed = true; return; }
  if (loadFailed) { status(null); loadFailed = false; }
  view = v.data;
  paged = a.data.alerts;
  E.oncallUpdated.textContent = fmtDateTime(view.now);
  renderOncall();
}

/** A change: refused, its error stays shown and the form keeps what was typed; done, the
 * panel is read again. */
async function change(path, method, body) {
  const r = await api(path, { method, body });
  if (!r.ok) { status(httpErrorText(r)); loadFailed = false; return; }
  status(null);
  await load();
}

function schedule(except) {
  return view.schedule.filter((r) => r.id !== except).map((r) => ({
    account: r.account, weekday: r.weekday, start_minute: r.start_minute, end_minute: r.end_minute, position: r.position,
  }));
}

const removeRange = (id) => change('/api/oncall/schedule', 'PUT', { ranges: schedule(id) });
const removeOverride = (id) => change(`/api/oncall/overrides/${encodeURIComponent(id)}`, 'DELETE');
const ack = (id) => change(`/api/alerts/${encodeURIComponent(id)}/ack`, 'POST', {});

E.oncallRangeForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const until = minutes(E.oncallRangeUntil.value);
  const ranges = schedule(null);
  ranges.push({
    account: E.oncallRangeAccount.value,
    weekday: Number(E.oncallRangeDay.value),
    start_minute: minutes(E.oncallRangeFrom.value),
    end_minute: until === 23 * 60 + 59 ? 1440 : until,
    position: Number(E.oncallRangePos.value),
  });
  change('/api/oncall/schedule', 'PUT', { ranges });
});

E.oncallOverrideForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  change('/api/oncall/overrides', 'POST', {
    account: E.oncallOverrideAccount.value,
    starts_at: jstMs(E.oncallOverrideFrom.value),
    ends_at: jstMs(E.oncallOverrideUntil.value),
  });
});

E.oncallChannelsAccount.addEventListener('change', fillChannels);
E.oncallChannelsForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const url = E.oncallChannelsUrl.value.trim();
  change(`/api/oncall/channels/${encodeURIComponent(E.oncallChannelsAccount.value)}`, 'PUT', {
    email: E.oncallChannelsEmail.value.trim() || null,
    webhook_url: url || null,
    webhook_format: url ? E.oncallChannelsFormat.value : null,
    webhook_secret_ref: url ? (E.oncallChannelsSecret.value || null) : null,
    phone: E.oncallChannelsPhone.value.trim() || null,
    line: E.oncallChannelsLine.checked,
  });
});

E.oncallLineUnlink.addEventListener('click', () =>
  change(`/api/oncall/line/${encodeURIComponent(E.oncallChannelsAccount.value)}`, 'DELETE'));

E.oncallLineCode.addEventListener('click', async () => {
  const r = await api('/api/oncall/line/code', { method: 'POST', body: {} });
  if (!r.ok) { status(httpErrorText(r)); return; }
  status(null);
  E.oncallLineCodeOut.textContent = t('oncall.line.codeIs', { code: r.data.code, until: fmtDateTime(r.data.expires_at) });
});

export function startOncall() {
  load();
  clearInterval(timer);
  timer = setInterval(load, POLL_MS);
}

export function stopOncall() {
  clearInterval(timer);
  timer = null;
}
