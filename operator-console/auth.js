// Session helpers shared by the console and the coordinator view.
// The session cookie is HttpOnly: JavaScript never sees a token.
import { t, setText } from '/console/i18n.js';
import { byTestId } from '/console/util.js';

/** fetch wrapper: same-origin credentials, JSON in and out. Never throws. */
export async function api(path, { method = 'GET', body } = {}) {
  const opts = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (_) {
    return { ok: false, status: 0, data: null, network: true };
  }
  let data = null;
  try {
    const text = await res.text();
    if (text) { try { data = JSON.parse(text); } catch (_) { data = text; } }
  } catch (_) { /* body unreadable */ }
  return { ok: res.ok, status: res.status, data };
}

export const getMe = () => api('/api/me');
export const login = (username, password) => api('/api/login', { method: 'POST', body: { username, password } });
export const logout = () => api('/api/logout', { method: 'POST' });

/** Message key for a failed login response. */
export function loginErrorKey(r) {
  if (r.network) return ['login.network'];
  if (r.status === 401 || r.status === 400 || r.status === 403) return ['login.bad'];
  if (r.status === 429) return ['login.rate'];
  return ['login.server', { status: r.status }];
}

/**
 * Wire a login form (with the login-* test ids). onSuccess(me) is called with
 * the /api/me answer after a successful login.
 */
export function bindLoginForm(form, onSuccess) {
  const user = byTestId('login-username', form);
  const pass = byTestId('login-password', form);
  const submit = byTestId('login-submit', form);
  const error = byTestId('login-error', form);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showLoginError(form, null);
    if (!user.value.trim() || !pass.value) {
      (user.value.trim() ? pass : user).focus();
      return;
    }
    submit.disabled = true;
    setText(submit, 'login.busy');
    try {
      const r = await login(user.value.trim(), pass.value);
      if (!r.ok) {
        const [key, vars] = loginErrorKey(r);
        showLoginError(form, key, vars);
        pass.select();
        return;
      }
      const me = await getMe();
      if (!me.ok || !me.data) {
        const [key, vars] = loginErrorKey(me);
        showLoginError(form, key, vars);
        return;
      }
      pass.value = '';
      onSuccess(me.data);
    } finally {
      submit.disabled = false;
      setText(submit, 'login.submit');
    }
  });
  return { focus: () => (user.value ? pass : user).focus(), error };
}

/**
 * Shows a login form afresh: the notice above it (a message key, or none), no error, and the
 * focus on the first field still to fill (the console) or always on the user name
 * (`userFirst`, as the coordinator view has always done).
 */
export function resetLoginForm(form, notice, noticeKey, { userFirst = false } = {}) {
  if (noticeKey) { setText(notice, noticeKey); notice.hidden = false; } else notice.hidden = true;
  showLoginError(form, null);
  const user = byTestId('login-username', form);
  (user.value && !userFirst ? byTestId('login-password', form) : user).focus();
}

export function showLoginError(form, key, vars) {
  const error = byTestId('login-error', form);
  if (!error) return;
  if (!key) {
    error.textContent = '';
    delete error.dataset.i18n;
    error.hidden = true;
    return;
  }
  setText(error, key, vars);
  error.hidden = false;
}

export { t };
