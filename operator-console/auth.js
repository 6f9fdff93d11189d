// Session helpers shared by the console and the coordinator view.
// The session cookie is HttpOnly: JavaScript never sees a token.
import { t, setText } from '/console/i18n.js';
import { byTestId, el } from '/console/util.js';

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
export const loginStep = (pending, body) => api('/api/login/step', { method: 'POST', body: { pending, ...body } });

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
  const done = async () => {
    const me = await getMe();
    if (!me.ok || !me.data) {
      removeSteps(form);
      const [key, vars] = loginErrorKey(me);
      showLoginError(form, key, vars);
      return;
    }
    pass.value = '';
    removeSteps(form);
    onSuccess(me.data);
  };
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
      pass.value = '';
      if (r.data && r.data.step) showStep(form, r.data, done);
      else await done();
    } finally {
      submit.disabled = false;
      setText(submit, 'login.submit');
    }
  });
  return { focus: () => (user.value ? pass : user).focus(), error };
}

/** Removes a sign-in's step panel and shows the login form again. */
function removeSteps(form) {
  form.parentNode?.querySelectorAll('.login-step').forEach((n) => n.remove());
  form.hidden = false;
}

/** Message key for a refused step. */
function stepErrorKey(r) {
  if (r.data?.error === 'bad_code') return ['step.badCode'];
  if (r.status === 400) return ['step.invalid'];
  return loginErrorKey(r);
}

/**
 * Shows the step a sign-in is at (`totp`, `change_password`, `totp_enrol`, `pledge`: see
 * gateway/src/http/sign_in.rs) in place of the login form, and goes on until the sign-in is
 * done (`done()`), or back to the login form when it expired.
 */
export function showStep(form, state, done) {
  removeSteps(form);
  form.hidden = true;
  const pending = state.pending;
  const panel = el('form', { class: 'card login-card login-step', novalidate: true, data: { testid: 'login-step', step: state.step } });
  const error = el('p', { class: 'form-error', role: 'alert', hidden: true, data: { testid: 'step-error' } });
  const submit = el('button', { type: 'submit', class: 'btn btn-primary', data: { testid: 'step-submit' }, i18n: ['step.submit'] });
  const field = (id, labelKey, attrs = {}) => {
    const input = el('input', { id, data: { testid: id }, autocomplete: 'off', spellcheck: 'false', ...attrs });
    return [el('label', { for: id, i18n: [labelKey] }), input];
  };
  let collect;
  const heading = el('h1', { i18n: [`step.${state.step}.heading`] });
  const intro = el('p', { class: 'notice small', i18n: [`step.${state.step}.intro`] });
  panel.append(heading, intro);
  if (state.step === 'totp') {
    const [codeLabel, code] = field('step-code', 'step.code', { inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '6' });
    const [recLabel, rec] = field('step-recovery', 'step.recovery', { maxlength: '20' });
    recLabel.hidden = true; rec.hidden = true;
    const toggle = el('button', { type: 'button', class: 'btn btn-ghost btn-small', data: { testid: 'step-use-recovery' }, i18n: ['step.useRecovery'] });
    toggle.addEventListener('click', () => {
      const useRec = rec.hidden;
      rec.hidden = !useRec; recLabel.hidden = !useRec; code.hidden = useRec; codeLabel.hidden = useRec;
      (useRec ? rec : code).focus();
    });
    panel.append(codeLabel, code, recLabel, rec, toggle);
    collect = () => (rec.hidden ? { code: code.value.trim() } : { recovery_code: rec.value.trim() });
  } else if (state.step === 'change_password') {
    const [l1, p1] = field('step-new-password', 'step.newPassword', { type: 'password', autocomplete: 'new-password', minlength: '12' });
    const [l2, p2] = field('step-new-password2', 'step.newPassword2', { type: 'password', autocomplete: 'new-password', minlength: '12' });
    panel.append(l1, p1, l2, p2);
    collect = () => {
      if (p1.value.length < 12) return 'step.tooShort';
      if (p1.value !== p2.value) return 'step.mismatch';
      return { new_password: p1.value };
    };
  } else if (state.step === 'totp_enrol') {
    const en = state.enrolment || {};
    panel.append(
      el('p', { class: 'small', i18n: ['step.secretLabel'] }),
      el('code', { class: 'secret', data: { testid: 'step-secret' }, text: en.secret || '' }),
      el('p', { class: 'small', i18n: ['step.uriLabel'] }),
      el('code', { class: 'secret small', data: { testid: 'step-uri' }, text: en.uri || '' }),
    );
    const [codeLabel, code] = field('step-code', 'step.code', { inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '6' });
    panel.append(codeLabel, code);
    collect = () => ({ code: code.value.trim() });
  } else if (state.step === 'pledge') {
    panel.append(el('p', { class: 'pledge-text', data: { testid: 'pledge-text' }, text: state.pledge_text || '' }));
    const box = el('input', { type: 'checkbox', id: 'step-pledge', data: { testid: 'pledge-accept' } });
    panel.append(el('label', { class: 'checkbox-label', for: 'step-pledge' }, box, ' ', el('span', { i18n: ['step.pledgeAccept'] })));
    collect = () => (box.checked ? { accept_pledge: true } : 'step.pledgeRequired');
  } else {
    collect = () => ({});
  }
  panel.append(error, submit);
  const showError = (key, vars) => { setText(error, key, vars); error.hidden = false; };
  panel.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    const body = collect();
    if (typeof body === 'string') { showError(body); return; }
    submit.disabled = true;
    try {
      const r = await loginStep(pending, body);
      if (!r.ok) {
        if (r.data?.error === 'sign_in_expired') {
          removeSteps(form);
          showLoginError(form, 'step.expired');
          return;
        }
        const [key, vars] = stepErrorKey(r);
        showError(key, vars);
        return;
      }
      const next = () => (r.data && r.data.step ? showStep(form, r.data, done) : done());
      if (Array.isArray(r.data?.recovery_codes)) showRecoveryCodes(form, r.data.recovery_codes, next);
      else await next();
    } finally {
      submit.disabled = false;
    }
  });
  form.after(panel);
  panel.querySelector('input')?.focus();
}

/** Shows recovery codes, once, until the person says they kept them. */
function showRecoveryCodes(form, codes, next) {
  removeSteps(form);
  form.hidden = true;
  const panel = el('div', { class: 'card login-card login-step', data: { testid: 'recovery-codes-panel' } });
  const list = el('ol', { class: 'recovery-codes', data: { testid: 'recovery-codes' } });
  for (const c of codes) list.append(el('li', {}, el('code', { text: c })));
  const go = el('button', { type: 'button', class: 'btn btn-primary', data: { testid: 'recovery-continue' }, i18n: ['step.codesKept'] });
  go.addEventListener('click', () => next());
  panel.append(el('h1', { i18n: ['step.codes.heading'] }), el('p', { class: 'notice small', i18n: ['step.codes.intro'] }), list, go);
  form.after(panel);
  go.focus();
}

/**
 * Shows a login form afresh: the notice above it (a message key, or none), no error, and the
 * focus on the first field still to fill (the console) or always on the user name
 * (`userFirst`, as the coordinator view has always done).
 */
export function resetLoginForm(form, notice, noticeKey, { userFirst = false } = {}) {
  removeSteps(form);
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
