// Tsunagu admin screen (/admin): sign-in (with the shared steps of auth.js), an admin role
// check, then one tab per part of the organisation's data. Each tab is a module
// /console/admin/NAME.js exporting mount(section, ctx), ctx = { api, t, me }:
//   accounts   accounts, roles, languages, phone identities, passwords, second factors
//   directory  the referral directory          (its own module)
//   phrases    canned phrases                   (its own module)
//   settings   settings                          (its own module)
// A tab whose module fails to load is shown as unavailable; the others work.

import { t, setText, initI18n } from '/console/i18n.js';
import { api as rawApi, getMe, logout as apiLogout, bindLoginForm, resetLoginForm } from '/console/auth.js';
import { $, $$, byIds, el } from '/console/util.js';

const TABS = ['accounts', 'directory', 'phrases', 'settings'];

const E = {
  ...byIds('login-view', 'login-form', 'login-notice', 'forbidden-view', 'admin-view', 'status-bar',
    'me-name', 'logout'),
  lang: $('#lang-switch'),
};

/**
 * The tabs' API call: parsed JSON, or an Error with .status and .code (the server's error
 * word). Same-origin fetch with the session cookie; the browser adds the Origin header the
 * gateway checks on changes. A 401 sends the page back to the sign-in.
 */
async function api(path, { method = 'GET', body } = {}) {
  const r = await rawApi(path, { method, body });
  if (r.ok) return r.data;
  if (r.status === 401) showLogin('login.expired');
  const err = new Error((r.data && (r.data.detail || r.data.error)) || `HTTP ${r.status}`);
  err.status = r.status;
  err.code = r.network ? 'network' : (r.data && r.data.error) || 'error';
  throw err;
}

initI18n(E.lang);
bindLoginForm(E.loginForm, (me) => start(me));
E.logout.addEventListener('click', async () => {
  await apiLogout();
  showLogin(null);
});
let chosen = null;   // the tab the admin picked (kept while the tabs are still loading)
for (const b of $$('#admin-tabs [data-tab]')) {
  b.addEventListener('click', () => { chosen = b.dataset.tab; selectTab(chosen); });
}
boot();

async function boot() {
  const r = await getMe();
  if (r.ok && r.data) start(r.data);
  else showLogin(r.network ? 'login.network' : null);
}

function showView(which) {
  E.loginView.hidden = which !== 'login';
  E.forbiddenView.hidden = which !== 'forbidden';
  E.adminView.hidden = which !== 'admin';
  E.statusBar.hidden = which === 'login';
}

let mounted = false;

function showLogin(noticeKey) {
  if (mounted) { location.reload(); return; }
  showView('login');
  resetLoginForm(E.loginForm, E.loginNotice, noticeKey, { userFirst: true });
}

async function start(me) {
  E.meName.textContent = t('signedInAs', { name: me.name || '' });
  if (me.role !== 'admin') { showView('forbidden'); return; }
  showView('admin');
  if (mounted) return;
  mounted = true;
  const ctx = { api, t, me };
  for (const name of TABS) {
    const section = document.getElementById(`admin-tab-${name}`);
    try {
      const m = await import(`/console/admin/${name}.js`);
      await m.mount(section, ctx);
    } catch (e) {
      section.replaceChildren(el('p', { class: 'muted', data: { testid: `tab-unavailable-${name}` }, i18n: ['admin.tabUnavailable'] }));
      section.dataset.unavailable = 'true';
      const button = $(`#admin-tabs [data-tab="${name}"]`);
      if (button) button.dataset.unavailable = 'true';
    }
  }
  const usable = (n) => !document.getElementById(`admin-tab-${n}`).dataset.unavailable;
  selectTab(chosen && usable(chosen) ? chosen : TABS.find(usable) || 'accounts');
}

function selectTab(name) {
  for (const b of $$('#admin-tabs [data-tab]')) b.setAttribute('aria-selected', String(b.dataset.tab === name));
  for (const s of $$('[data-tab-panel]')) s.hidden = s.dataset.tabPanel !== name;
}

export { setText };
