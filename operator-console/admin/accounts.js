// Admin screen, accounts tab: list, add (a one-time password shown once), role, languages,
// phone identity, reset password, disable / re-enable, end sessions, reset the second factor,
// delete; and the account audit trail. Every change is audited by the gateway
// (gateway/src/auth/admin.rs); this module only asks and shows.

import { setText } from '/console/i18n.js';
import { el, fmtDateTime } from '/console/util.js';

const ROLES = ['operator', 'coordinator', 'admin'];

export async function mount(section, { api, t, me }) {
  const status = el('p', { class: 'form-error', role: 'status', hidden: true, data: { testid: 'accounts-status' } });
  const secret = el('div', { class: 'notice', role: 'status', hidden: true, data: { testid: 'one-time-password-panel' } });
  const rows = el('tbody', { data: { testid: 'account-rows' } });
  const audit = el('tbody', { data: { testid: 'account-audit-rows' } });

  const input = (testid, labelKey, attrs = {}) => {
    const i = el('input', { id: testid, data: { testid }, autocomplete: 'off', spellcheck: 'false', ...attrs });
    return [el('label', { for: testid, i18n: [labelKey] }), i];
  };
  const [lu, username] = input('acc-add-username', 'acc.username', { autocapitalize: 'off' });
  const [ln, name] = input('acc-add-name', 'acc.displayName');
  const [ll, langs] = input('acc-add-languages', 'acc.languages', { value: 'ja' });
  const role = el('select', { id: 'acc-add-role', data: { testid: 'acc-add-role' } },
    ...ROLES.map((r) => el('option', { value: r, i18n: [`role.${r}`] })));
  const addForm = el('form', { class: 'admin-form', novalidate: true, data: { testid: 'acc-add-form' } },
    el('h3', { i18n: ['acc.add'] }), lu, username, ln, name,
    el('label', { for: 'acc-add-role', i18n: ['acc.role'] }), role, ll, langs,
    el('button', { type: 'submit', class: 'btn btn-primary', data: { testid: 'acc-add-submit' }, i18n: ['acc.addSubmit'] }));

  section.replaceChildren(
    el('h2', { i18n: ['admin.tab.accounts'] }),
    el('p', { class: 'muted small', i18n: ['acc.intro'] }),
    status, secret, addForm,
    el('div', { class: 'table-wrap' }, el('table', { class: 'data-table' },
      el('thead', {}, el('tr', {}, ...['acc.username', 'acc.displayName', 'acc.role', 'acc.languages', 'acc.state',
        'acc.totp', 'acc.pledge', 'acc.lastLogin', 'acc.actions'].map((k) => el('th', { scope: 'col', i18n: [k] })))),
      rows)),
    el('h3', { i18n: ['acc.audit'] }),
    el('div', { class: 'table-wrap' }, el('table', { class: 'data-table' },
      el('thead', {}, el('tr', {}, ...['acc.at', 'acc.actor', 'acc.action', 'acc.target', 'acc.detail']
        .map((k) => el('th', { scope: 'col', i18n: [k] })))),
      audit)),
  );

  let accounts = [];
  const nameOf = (id) => {
    const a = accounts.find((x) => x.id === id);
    return a ? a.username : (id ? id.slice(-6) : '–');
  };
  const fail = (e) => {
    setText(status, 'acc.failed', { why: e.message || String(e) });
    status.hidden = false;
  };
  const showSecret = (username, password) => {
    secret.replaceChildren(
      el('p', { i18n: ['acc.oneTimeShown', { username }] }),
      el('code', { class: 'secret', data: { testid: 'one-time-password' }, text: password }),
      el('button', { type: 'button', class: 'btn btn-small', data: { testid: 'one-time-password-hide' }, i18n: ['acc.hide'],
        on: { click: () => { secret.hidden = true; secret.replaceChildren(); } } }),
    );
    secret.hidden = false;
  };

  async function load() {
    try {
      accounts = await api('/api/admin/accounts');
      rows.replaceChildren(...accounts.map(row));
      const trail = await api('/api/admin/audit?limit=50');
      audit.replaceChildren(...trail.map((e) => el('tr', { data: { testid: 'account-audit-row', action: e.action } },
        el('td', { text: fmtDateTime(e.at) }), el('td', { text: nameOf(e.actor_id) }),
        el('td', { i18n: [`acc.act.${e.action}`] }), el('td', { text: nameOf(e.target_id) }),
        el('td', { text: e.detail || '' }))));
    } catch (e) { fail(e); }
  }

  async function act(a, action, body = {}) {
    status.hidden = true;
    try {
      const r = await api(`/api/admin/accounts/${a.id}/${action}`, { method: 'POST', body });
      if (r && r.one_time_password) showSecret(a.username, r.one_time_password);
    } catch (e) { fail(e); }
    await load();
  }

  function row(a) {
    const self = a.id === me.id;
    const button = (action, key, onClick) => el('button', {
      type: 'button', class: 'btn btn-small', data: { action, testid: `acc-${action}` }, i18n: [key], on: { click: onClick },
    });
    const roleSelect = el('select', { data: { testid: 'acc-role' }, disabled: self, 'aria-label': t('acc.role') },
      ...ROLES.map((r) => el('option', { value: r, selected: r === a.role, i18n: [`role.${r}`] })));
    roleSelect.addEventListener('change', () => act(a, 'role', { role: roleSelect.value }));
    const actions = el('td', { class: 'actions' },
      button('languages', 'acc.setLanguages', () => {
        const v = prompt(t('acc.languagesPrompt'), a.languages.join(','));
        if (v !== null) act(a, 'languages', { languages: v.split(',').map((s) => s.trim()).filter(Boolean), capacity: a.capacity ?? undefined });
      }),
      button('phone', 'acc.setPhone', () => {
        const v = prompt(t('acc.phonePrompt'), a.phone || '');
        if (v !== null) act(a, 'phone', { phone: v.trim() || null });
      }),
      button('reset-password', 'acc.resetPassword', () => act(a, 'reset-password')),
      self ? null : (a.disabled
        ? button('enable', 'acc.enable', () => act(a, 'enable'))
        : button('disable', 'acc.disable', () => act(a, 'disable'))),
      button('end-sessions', 'acc.endSessions', () => act(a, 'end-sessions')),
      a.totp ? button('reset-totp', 'acc.resetTotp', () => act(a, 'reset-totp')) : null,
      self ? null : button('delete', 'acc.delete', async () => {
        if (!confirm(t('acc.deleteConfirm', { username: a.username }))) return;
        try { await api(`/api/admin/accounts/${a.id}`, { method: 'DELETE' }); } catch (e) { fail(e); }
        await load();
      }),
    );
    return el('tr', { data: { testid: 'account-row', username: a.username, disabled: a.disabled } },
      el('td', { text: a.username }), el('td', { text: a.display_name }), el('td', {}, roleSelect),
      el('td', { text: a.languages.join(', ') + (a.capacity ? ` (${a.capacity})` : '') }),
      el('td', { data: { testid: 'acc-state' }, i18n: [a.disabled ? 'acc.disabled' : (a.one_time_password ? 'acc.oneTime' : 'acc.active')] }),
      el('td', { i18n: [a.totp ? 'acc.totpOn' : 'acc.totpOff'] }),
      el('td', { text: a.pledge_at ? fmtDateTime(a.pledge_at) : '–' }),
      el('td', { text: a.last_login_at ? fmtDateTime(a.last_login_at) : '–' }),
      actions);
  }

  addForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    status.hidden = true;
    try {
      const r = await api('/api/admin/accounts', {
        method: 'POST',
        body: {
          username: username.value.trim(), display_name: name.value.trim(), role: role.value,
          languages: langs.value.split(',').map((s) => s.trim()).filter(Boolean),
        },
      });
      showSecret(r.username, r.one_time_password);
      username.value = ''; name.value = '';
    } catch (err) { fail(err); }
    await load();
  });

  await load();
}
