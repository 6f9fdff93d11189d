// Admin tab: runtime settings (overloaded mode, the thin-staff threshold). Saved in the
// database, audited; every node takes them within seconds. The threshold's default is the
// configuration file's `[alerts] min_on_duty`.

import { el } from '/console/util.js';

export async function mount(section, { api, t }) {
  const overloaded = el('input', { type: 'checkbox', id: 'set-overloaded', data: { testid: 'set-overloaded' } });
  const minOnDuty = el('input', { type: 'number', id: 'set-min-on-duty', min: 0, step: 1, data: { testid: 'set-min-on-duty' } });
  const defaults = el('p', { class: 'muted small' });
  const error = el('p', { class: 'form-error', role: 'alert', hidden: true, data: { testid: 'set-error' } });
  const status = el('p', { class: 'muted small', role: 'status', data: { testid: 'set-status' } });
  const save = el('button', { type: 'submit', class: 'btn btn-primary', text: t('admin.save'), data: { testid: 'set-save' } });
  const form = el('form', { class: 'admin-editor', novalidate: true },
    el('p', { class: 'check-row' }, overloaded, ' ', el('label', { for: overloaded.id, text: t('admin.set.overloaded') })),
    el('p', { class: 'muted small', text: t('admin.set.overloadedHint') }),
    el('p', {}, el('label', { for: minOnDuty.id, text: t('admin.set.minOnDuty') }), minOnDuty),
    defaults, error, el('p', {}, save), status);
  section.replaceChildren(el('h2', { text: t('admin.set.heading') }), form);

  function show(s) {
    overloaded.checked = !!s.overloaded;
    minOnDuty.value = String(s.min_on_duty);
    minOnDuty.max = String(s.max_min_on_duty);
    defaults.textContent = t('admin.set.default', { n: s.defaults.min_on_duty });
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    status.textContent = '';
    const n = Number(minOnDuty.value);
    if (!Number.isInteger(n) || n < 0) {
      error.textContent = t('admin.set.badNumber');
      error.hidden = false;
      minOnDuty.focus();
      return;
    }
    try {
      show(await api('/api/admin/settings', { method: 'PUT', body: { overloaded: overloaded.checked, min_on_duty: n } }));
      status.textContent = t('admin.saved');
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  });

  try {
    show(await api('/api/admin/settings'));
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}
