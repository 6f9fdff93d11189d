// First-run setup: create the first administrator with the one-time setup code.
import { t, initI18n } from '/console/i18n.js';
import { api } from '/console/auth.js';
import { $, el, byTestId, charCount } from '/console/util.js';

initI18n($('#lang-switch'));
document.title = `${t('app.name')} ${t('setup.subtitle')}`;

const form = $('#setup-form');
const f = {
  code: byTestId('setup-code'),
  username: byTestId('setup-username'),
  displayName: byTestId('setup-display-name'),
  password: byTestId('setup-password'),
  confirm: byTestId('setup-password-confirm'),
  submit: byTestId('setup-submit'),
  result: byTestId('setup-result'),
};

function showError(key, vars, field) {
  f.result.replaceChildren(el('p', { class: 'result-error', i18n: [key, vars] }));
  f.result.dataset.state = 'error';
  f.result.setAttribute('role', 'alert');
  for (const input of [f.code, f.username, f.displayName, f.password, f.confirm]) input.removeAttribute('aria-invalid');
  if (field) { field.setAttribute('aria-invalid', 'true'); field.focus(); }
}

function showOk() {
  f.result.replaceChildren(
    el('p', { class: 'result-ok', i18n: ['setup.ok'] }),
    el('a', { class: 'btn btn-primary', href: '/console/', data: { testid: 'setup-console-link' }, i18n: ['setup.goConsole'] }),
  );
  f.result.dataset.state = 'ok';
  f.result.setAttribute('role', 'status');
}

/** Pick a message for a failed answer: a known error code in the body first, then the status. */
function serverError(r) {
  if (r.network) return ['setup.err.network'];
  const body = r.data && typeof r.data === 'object' ? r.data : {};
  const code = body.code || body.error;
  if (typeof code === 'string') {
    const key = `setup.err.${code}`;
    if (t(key) !== key) return [key];
    if (r.status !== 400 && r.status !== 403 && r.status !== 409 && r.status !== 429) return ['setup.err.code', { code }];
  }
  if ([400, 403, 409, 429].includes(r.status)) return [`setup.err.${r.status}`];
  return ['setup.err.other', { status: r.status }];
}

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const code = f.code.value.trim();
  const username = f.username.value.trim();
  const displayName = f.displayName.value.trim();
  const password = f.password.value;
  const missing = [[code, f.code], [username, f.username], [displayName, f.displayName], [password, f.password]].find(([v]) => !v);
  if (missing) { showError('setup.err.missing', null, missing[1]); return; }
  if (charCount(password) < 12) { showError('setup.err.short', null, f.password); return; }
  if (password !== f.confirm.value) { showError('setup.err.mismatch', null, f.confirm); return; }

  f.submit.disabled = true;
  f.result.replaceChildren();
  f.result.dataset.state = 'busy';
  const r = await api('/api/setup', { method: 'POST', body: { code, username, display_name: displayName, password } });
  f.submit.disabled = false;
  if (r.ok) {
    f.password.value = '';
    f.confirm.value = '';
    f.code.value = '';
    for (const input of [f.code, f.username, f.displayName, f.password, f.confirm]) input.disabled = true;
    f.submit.hidden = true;
    showOk();
    return;
  }
  const [key, vars] = serverError(r);
  showError(key, vars, r.status === 403 ? f.code : null);
});
