// The admin page (admins only): sign-in, then one tab per part, each a module under admin/
// loaded when its tab is first opened and given `mount(section, { api, t, me })`. A tab whose
// module cannot be loaded says it is unavailable. Minimal shell: each tab's logic is its module.

import { t, initI18n } from '/console/i18n.js';
import { api as rawApi, getMe, logout, bindLoginForm, resetLoginForm } from '/console/auth.js';
import { $, byIds } from '/console/util.js';

const E = {
  ...byIds('login-view', 'login-form', 'login-notice', 'forbidden-view', 'admin-view', 'status-bar',
    'me-name', 'logout', 'admin-tabs'),
  lang: $('#lang-switch'),
};
const mounted = new Map();   // tab name -> Promise of its mount
let me = null;

/** The API for the tabs: parsed JSON, or an Error with `.status` and `.code`. */
async function api(path, opts) {
  const r = await rawApi(path, opts);
  if (r.ok) return r.data;
  const err = new Error((r.data && r.data.detail) || (r.data && r.data.error) || `HTTP ${r.status}`);
  err.status = r.status;
  err.code = (r.data && r.data.error) || (r.network ? 'network' : 'http');
  if (r.status === 401) showLogin('login.expired');
  throw err;
}

function showView(name) {
  E.loginView.hidden = name !== 'login';
  E.forbiddenView.hidden = name !== 'forbidden';
  E.adminView.hidden = name !== 'admin';
  E.statusBar.hidden = name !== 'admin';
}

function showLogin(noticeKey) {
  showView('login');
  resetLoginForm(E.loginForm, E.loginNotice, noticeKey, { userFirst: true });
}

function select(name) {
  for (const b of E.adminTabs.querySelectorAll('button[data-tab]')) {
    b.setAttribute('aria-selected', String(b.dataset.tab === name));
  }
  for (const s of document.querySelectorAll('[data-tab-panel]')) s.hidden = s.id !== `admin-tab-${name}`;
  if (mounted.has(name)) return;
  const section = document.getElementById(`admin-tab-${name}`);
  mounted.set(name, import(`/console/admin/${name}.js`).then(
    (m) => m.mount(section, { api, t, me }),
    () => {
      section.dataset.unavailable = 'true';
      section.textContent = t('admin.unavailable');
    },
  ));
}

function start(user) {
  me = user;
  if (user.role !== 'admin') { showView('forbidden'); return; }
  E.meName.textContent = user.name || user.username || '';
  showView('admin');
  select('directory');
}

initI18n(E.lang);
bindLoginForm(E.loginForm, start);
E.adminTabs.addEventListener('click', (e) => {
  const b = e.target.closest('button[data-tab]');
  if (b) select(b.dataset.tab);
});
E.logout.addEventListener('click', async () => { await logout(); location.reload(); });
getMe().then((r) => { if (r.ok && r.data) start(r.data); else showLogin(null); });
