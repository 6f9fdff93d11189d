// Admin tab: canned phrases (text per language, category). Add, edit, hide, order; CSV export
// and import. Every change is audited by the gateway.

import { el } from '/console/util.js';
import { mountEditor } from '/console/admin/editor.js';

const FIELDS = [
  { key: 'title', kind: 'text', label: 'admin.ph.title' },
  { key: 'lang', kind: 'text', label: 'admin.ph.lang' },
  { key: 'category', kind: 'text', label: 'admin.ph.category' },
  { key: 'text', kind: 'area', label: 'admin.ph.text' },
  { key: 'hidden', kind: 'check', label: 'admin.hidden' },
];

function toInput(p) {
  return { title: p.title, lang: p.lang, category: p.category, text: p.text, hidden: !!p.hidden_at };
}

export function mount(section, ctx) {
  return mountEditor(section, ctx, {
    name: 'ph',
    title: 'admin.ph.heading',
    intro: 'admin.ph.intro',
    path: '/api/admin/phrases',
    csvPath: '/api/admin/phrases.csv',
    importPath: '/api/admin/phrases/import',
    fields: FIELDS,
    toInput,
    summary: (p) => [
      el('strong', { class: 'admin-row-name', text: p.title }), ' ',
      el('span', { class: 'chip chip-small', text: p.lang }), ' ',
      el('span', { class: 'muted small', text: p.category }),
      el('p', { class: 'small', text: p.text }),
    ],
    flags: (p) => (p.hidden_at ? ['admin.flag.hidden'] : []),
  });
}
