// What the directory and phrases tabs share: a list of rows with edit / hide / move buttons,
// an edit form built from a field list, and CSV export and import (all or nothing; the
// gateway's error names the line). Each tab passes its fields, its API paths and how a row
// reads. Text is set with textContent only.

import { el } from '/console/util.js';

/**
 * Mounts an editor in `section`.
 * cfg = { name, path, csvPath, importPath, fields: [{ key, kind: 'text'|'area'|'list'|'check', label }],
 *         summary(row) -> Node[], flags(row) -> [i18nKey], toInput(row) -> object }
 */
export function mountEditor(section, { api, t }, cfg) {
  const p = cfg.name;
  let rows = [];
  const status = el('p', { class: 'muted small', role: 'status', data: { testid: `${p}-status` } });
  const error = el('p', { class: 'form-error', role: 'alert', hidden: true, data: { testid: `${p}-error` } });
  const list = el('ol', { class: 'admin-list', data: { testid: `${p}-list` } });
  const form = el('form', { class: 'admin-editor', hidden: true, novalidate: true, data: { testid: `${p}-form` } });
  const heading = el('h3', {});
  form.append(heading);
  const inputs = {};
  for (const f of cfg.fields) {
    const id = `${p}-field-${f.key}`;
    let input;
    if (f.kind === 'area') input = el('textarea', { id, name: f.key, rows: 3 });
    else if (f.kind === 'check') input = el('input', { id, name: f.key, type: 'checkbox' });
    else input = el('input', { id, name: f.key, autocomplete: 'off' });
    inputs[f.key] = input;
    const label = el('label', { for: id, text: t(f.label) });
    form.append(f.kind === 'check' ? el('p', { class: 'check-row' }, input, ' ', label) : el('p', {}, label, input));
    if (f.hint) form.append(el('p', { class: 'muted small', text: t(f.hint) }));
  }
  const formError = el('p', { class: 'form-error', role: 'alert', hidden: true, data: { testid: `${p}-form-error` } });
  const save = el('button', { type: 'submit', class: 'btn btn-primary', text: t('admin.save'), data: { testid: `${p}-save` } });
  const cancel = el('button', { type: 'button', class: 'btn btn-ghost', text: t('admin.cancel') });
  form.append(formError, el('p', {}, save, ' ', cancel));
  let editing = null;   // the row's id, or '' for a new one

  const add = el('button', { type: 'button', class: 'btn', text: t('admin.add'), data: { testid: `${p}-add` } });
  const exportLink = el('a', { class: 'btn btn-ghost', href: cfg.csvPath, download: '', text: t('admin.csv.export'), data: { testid: `${p}-export` } });
  const importText = el('textarea', { rows: 4, id: `${p}-import-text`, data: { testid: `${p}-import-text` } });
  const importFile = el('input', { type: 'file', accept: '.csv,text/csv', id: `${p}-import-file` });
  const importButton = el('button', { type: 'button', class: 'btn', text: t('admin.csv.import'), data: { testid: `${p}-import` } });
  const importResult = el('p', { class: 'muted small', role: 'status', data: { testid: `${p}-import-result` } });
  const importBox = el('details', { class: 'admin-import' },
    el('summary', { text: t('admin.csv.heading') }),
    el('p', { class: 'muted small', text: t('admin.csv.hint') }),
    el('p', {}, el('label', { for: importFile.id, text: t('admin.csv.file') }), importFile),
    el('p', {}, el('label', { for: importText.id, text: t('admin.csv.text') }), importText),
    el('p', {}, importButton), importResult);

  section.replaceChildren(
    el('h2', { text: t(cfg.title) }),
    el('p', { class: 'muted small', text: t(cfg.intro) }),
    el('p', {}, add, ' ', exportLink), importBox, error, status, form, list);

  function fail(where, e) {
    where.textContent = e && e.message ? e.message : String(e);
    where.hidden = false;
  }

  async function load() {
    error.hidden = true;
    try {
      rows = await api(cfg.path);
      render();
    } catch (e) { fail(error, e); }
  }

  function render() {
    list.replaceChildren(...rows.map((row, i) => {
      const flags = cfg.flags(row).map((k) => el('span', { class: 'chip chip-small', text: t(k) }));
      const edit = el('button', { type: 'button', class: 'btn btn-small', text: t('admin.edit'), data: { testid: `${p}-edit` } });
      edit.addEventListener('click', () => openForm(row));
      const hide = el('button', { type: 'button', class: 'btn btn-small btn-ghost', text: t(row.hidden_at ? 'admin.show' : 'admin.hide'), data: { testid: `${p}-hide` } });
      hide.addEventListener('click', () => write(`${cfg.path}/${encodeURIComponent(row.id)}`, 'PUT', { ...cfg.toInput(row), hidden: !row.hidden_at }));
      const up = el('button', { type: 'button', class: 'btn btn-small btn-ghost', text: '↑', 'aria-label': t('admin.up'), disabled: i === 0, data: { testid: `${p}-up` } });
      up.addEventListener('click', () => move(i, -1));
      const down = el('button', { type: 'button', class: 'btn btn-small btn-ghost', text: '↓', 'aria-label': t('admin.down'), disabled: i === rows.length - 1, data: { testid: `${p}-down` } });
      down.addEventListener('click', () => move(i, 1));
      return el('li', { class: `admin-row${row.hidden_at ? ' is-hidden' : ''}`, data: { testid: `${p}-row`, id: row.id } },
        el('div', { class: 'admin-row-main' }, ...cfg.summary(row), ...flags),
        el('div', { class: 'admin-row-actions' }, edit, ' ', hide, ' ', up, ' ', down));
    }));
    status.textContent = rows.length ? '' : t('admin.empty');
  }

  function openForm(row) {
    editing = row ? row.id : '';
    heading.textContent = t(row ? 'admin.editing' : 'admin.adding');
    const input = row ? cfg.toInput(row) : {};
    for (const f of cfg.fields) {
      const v = input[f.key];
      if (f.kind === 'check') inputs[f.key].checked = !!v;
      else if (f.kind === 'list') inputs[f.key].value = Array.isArray(v) ? v.join(', ') : '';
      else inputs[f.key].value = v ?? '';
    }
    formError.hidden = true;
    form.hidden = false;
    inputs[cfg.fields[0].key].focus();
  }

  function formValue() {
    const out = {};
    for (const f of cfg.fields) {
      const input = inputs[f.key];
      if (f.kind === 'check') out[f.key] = input.checked;
      else if (f.kind === 'list') out[f.key] = input.value.split(',').map((s) => s.trim()).filter(Boolean);
      else out[f.key] = input.value;
    }
    return out;
  }

  async function write(path, method, body, where = error) {
    where.hidden = true;
    try {
      await api(path, { method, body });
      await load();
      return true;
    } catch (e) { fail(where, e); return false; }
  }

  async function move(i, by) {
    const ids = rows.map((r) => r.id);
    const [id] = ids.splice(i, 1);
    ids.splice(i + by, 0, id);
    await write(`${cfg.path}/order`, 'POST', { ids });
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const path = editing ? `${cfg.path}/${encodeURIComponent(editing)}` : cfg.path;
    const ok = await write(path, editing ? 'PUT' : 'POST', formValue(), formError);
    if (ok) { form.hidden = true; status.textContent = t('admin.saved'); }
  });
  cancel.addEventListener('click', () => { form.hidden = true; });
  add.addEventListener('click', () => openForm(null));
  importFile.addEventListener('change', async () => {
    const file = importFile.files && importFile.files[0];
    if (file) importText.value = await file.text();
  });
  importButton.addEventListener('click', async () => {
    importResult.textContent = '';
    error.hidden = true;
    try {
      const r = await api(cfg.importPath, { method: 'POST', body: { csv: importText.value } });
      importResult.textContent = t('admin.csv.imported', { n: r.imported });
      await load();
    } catch (e) { fail(error, e); }
  });
  return load();
}
