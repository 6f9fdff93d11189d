// Admin tab: the referral directory. Add, edit, hide, order, mark for closing messages, mark
// verified; CSV export and import. Every change is audited by the gateway; nodes see it within
// seconds, and the closing messages of widget, LINE and phone list the entries marked for them.

import { el } from '/console/util.js';
import { mountEditor } from '/console/admin/editor.js';

const FIELDS = [
  { key: 'name', kind: 'text', label: 'admin.dir.name' },
  { key: 'phone', kind: 'text', label: 'admin.dir.phone' },
  { key: 'url', kind: 'text', label: 'admin.dir.url' },
  { key: 'helps_with', kind: 'area', label: 'admin.dir.helps' },
  { key: 'hours', kind: 'text', label: 'admin.dir.hours', hint: 'admin.dir.hoursHint' },
  { key: 'hours_note', kind: 'text', label: 'admin.dir.hoursNote' },
  { key: 'region', kind: 'text', label: 'admin.dir.region' },
  { key: 'topics', kind: 'list', label: 'admin.dir.topics' },
  { key: 'languages', kind: 'list', label: 'admin.dir.languages' },
  { key: 'notes', kind: 'area', label: 'admin.dir.notes' },
  { key: 'for_closing', kind: 'check', label: 'admin.dir.forClosing' },
  { key: 'verified', kind: 'check', label: 'admin.dir.verified' },
  { key: 'hidden', kind: 'check', label: 'admin.hidden' },
];

function toInput(r) {
  return {
    name: r.name, phone: r.phone, url: r.url, helps_with: r.helps_with, hours: r.hours,
    hours_note: r.hours_note, region: r.region, topics: r.topics, languages: r.languages,
    notes: r.notes, for_closing: r.for_closing, verified: !!r.verified_at, hidden: !!r.hidden_at,
  };
}

export function mount(section, ctx) {
  return mountEditor(section, ctx, {
    name: 'dir',
    title: 'admin.dir.title',
    intro: 'admin.dir.intro',
    path: '/api/admin/directory',
    csvPath: '/api/admin/directory.csv',
    importPath: '/api/admin/directory/import',
    fields: FIELDS,
    toInput,
    summary: (r) => [
      el('strong', { class: 'admin-row-name', text: r.name }), ' ',
      el('span', { class: 'phone', text: r.phone }), ' ',
      el('span', { class: 'muted small', text: r.hours_note || r.hours }),
    ],
    flags: (r) => [
      r.for_closing && 'admin.dir.flag.closing',
      r.needs_verification && 'admin.dir.flag.unverified',
      r.hidden && 'admin.flag.hidden',
      r.open_now === true && 'directory.openNow',
    ].filter(Boolean),
  });
}
