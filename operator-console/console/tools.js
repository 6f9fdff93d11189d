// The side panel: saved phrases (loaded once when first opened, filtered as the operator types)
// and the referral directory (searched on the gateway by topic and region, each entry saying
// whether it is open now in Japan time), inserted into the composer. Owns both lists and which
// panel is open.

import { setText } from '/console/i18n.js';
import { api } from '/console/auth.js';
import { $, byIds, el } from '/console/util.js';
import { expire } from '/console/console/session.js';
import { currentConv } from '/console/console/conversations.js';
import { composerOpen } from '/console/console/pane.js';
import { onLocalInput } from '/console/console/messages.js';

const E = {
  ...byIds('composer', 'phrases-button', 'directory-button', 'tools', 'phrases-panel',
    'phrase-filter', 'phrases-status', 'phrase-list', 'directory-panel', 'directory-search',
    'directory-region', 'directory-status', 'directory-list'),
  input: $('#message-input'),
};

let phrases = null;
let directory = null;
let open = null;          // 'phrases' | 'directory' | null

export function toolsOpen() { return open; }

function toggleTool(which) {
  if (open === which) { closeTools(); return; }
  open = which;
  E.tools.hidden = false;
  E.phrasesPanel.hidden = which !== 'phrases';
  E.directoryPanel.hidden = which !== 'directory';
  E.phrasesButton.setAttribute('aria-expanded', String(which === 'phrases'));
  E.directoryButton.setAttribute('aria-expanded', String(which === 'directory'));
  document.body.classList.add('tools-open');
  if (which === 'phrases') {
    if (!phrases) loadPhrases(); else renderPhrases();
    E.phraseFilter.focus();
  } else {
    // Asked again at every opening: "open now" is true of the moment it was asked.
    loadDirectory();
    E.directorySearch.focus();
  }
}

export function closeTools() {
  const was = open;
  open = null;
  E.tools.hidden = true;
  E.phrasesPanel.hidden = true;
  E.directoryPanel.hidden = true;
  E.phrasesButton.setAttribute('aria-expanded', 'false');
  E.directoryButton.setAttribute('aria-expanded', 'false');
  document.body.classList.remove('tools-open');
  if (was && composerOpen()) E.input.focus();
}

async function loadPhrases() {
  const list = await loadList('/api/phrases', E.phrasesStatus);
  if (!list) return;
  phrases = list.filter((p) => p && typeof p.text === 'string');
  renderPhrases();
}

let asked = 0;            // the latest directory search (an older answer is dropped)
let searchTimer = null;

async function loadDirectory() {
  const n = ++asked;
  const q = new URLSearchParams({
    topic: E.directorySearch.value.trim(), region: E.directoryRegion.value.trim(),
  });
  const list = await loadList(`/api/directory?${q}`, E.directoryStatus);
  if (!list || n !== asked) return;
  directory = list.filter((d) => d && typeof d.name === 'string');
  renderDirectory();
}

function searchSoon() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(loadDirectory, 250);
}

/** GETs a panel's list at `path`, `status` saying it is loading or failed; null if none came. */
async function loadList(path, status) {
  setText(status, 'tools.loading');
  const r = await api(path);
  if (r.status === 401) { expire(); return null; }
  if (!r.ok || !Array.isArray(r.data)) { setText(status, 'tools.loadError'); return null; }
  return r.data;
}

function norm(s) { return String(s ?? '').normalize('NFKC').toLowerCase(); }

export function renderPhrases() {
  if (!phrases) return;
  const q = norm(E.phraseFilter.value).trim();
  const conv = currentConv();
  const lang = conv && conv.summary.language;
  const terms = q.split(/\s+/).filter(Boolean);
  const list = phrases
    .filter((p) => terms.every((w) => norm(`${p.title} ${p.text} ${p.lang}`).includes(w)))
    .sort((a, b) => (b.lang === lang) - (a.lang === lang));
  E.phraseList.replaceChildren(...list.map((p) => {
    const b = el('button', { type: 'button', class: 'phrase', data: { testid: 'phrase', phraseId: p.id ?? '' } },
      el('span', { class: 'phrase-title' }, p.title || '', p.lang ? el('span', { class: 'chip chip-small', text: p.lang }) : null),
      el('span', { class: 'phrase-text', text: p.text }));
    b.addEventListener('click', () => insertText(p.text));
    return el('li', {}, b);
  }));
  if (list.length === 0) setText(E.phrasesStatus, 'phrases.empty');
  else { E.phrasesStatus.textContent = ''; delete E.phrasesStatus.dataset.i18n; }
}

function helpsText(h) { return Array.isArray(h) ? h.join('、') : String(h ?? ''); }

function safeWeb(url) {
  try {
    const u = new URL(String(url));
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch (_) { return null; }
}

function hoursText(d) { return d.hours_note || d.hours || ''; }

export function renderDirectory() {
  if (!directory) return;
  E.directoryList.replaceChildren(...directory.map((d) => {
    const dl = el('dl', { class: 'dir-fields' });
    const field = (key, value) => {
      if (value === undefined || value === null || value === '') return;
      dl.append(el('dt', { i18n: [key] }), el('dd', {}, value));
    };
    field('directory.helps', helpsText(d.helps_with) || null);
    field('directory.hours', hoursText(d));
    field('directory.phone', d.phone ? el('span', { class: 'phone', text: d.phone }) : null);
    const web = d.url && safeWeb(d.url);
    field('directory.web', web ? el('a', { href: web, target: '_blank', rel: 'noopener noreferrer', text: d.url }) : (d.url || null));
    field('directory.region', d.region || null);
    field('directory.notes', d.notes);
    const chips = el('p', { class: 'dir-chips' });
    if (d.open_now === true) chips.append(el('span', { class: 'chip chip-small chip-open', data: { testid: 'directory-open-now' }, i18n: ['directory.openNow'] }));
    if (d.open_now === false) chips.append(el('span', { class: 'chip chip-small', data: { testid: 'directory-closed-now' }, i18n: ['directory.closedNow'] }));
    if (d.needs_verification) chips.append(el('span', { class: 'chip chip-small chip-warn', i18n: ['directory.unverified'] }));
    for (const topic of Array.isArray(d.topics) ? d.topics : []) chips.append(el('span', { class: 'chip chip-small', text: topic }));
    const insert = el('button', { type: 'button', class: 'btn btn-small', data: { testid: 'directory-insert' }, i18n: ['directory.insert'] });
    insert.addEventListener('click', () => insertText(referralText(d)));
    return el('li', { class: 'dir-entry', data: { testid: 'directory-entry', entryId: d.id ?? '' } },
      el('h3', { text: d.name }), chips, dl, insert);
  }));
  if (directory.length === 0) setText(E.directoryStatus, 'directory.empty');
  else { E.directoryStatus.textContent = ''; delete E.directoryStatus.dataset.i18n; }
}

/** Referral text for the person, in the language of the conversation where we can. */
function referralText(d) {
  const conv = currentConv();
  const en = conv && conv.summary.language && !String(conv.summary.language).startsWith('ja');
  const lines = [en ? `[${d.name}]` : `【${d.name}】`];
  const helps = helpsText(d.helps_with);
  if (helps) lines.push(helps);
  const hours = hoursText(d);
  if (d.phone) lines.push(`${en ? 'Phone' : '電話'}: ${d.phone}${hours ? (en ? ` (${hours})` : `（${hours}）`) : ''}`);
  else if (hours) lines.push(`${en ? 'Hours' : '受付時間'}: ${hours}`);
  if (d.url) lines.push(String(d.url));
  return lines.join('\n');
}

function insertText(text) {
  const conv = currentConv();
  if (!conv || E.composer.hidden) return;
  const input = E.input;
  const start = input.selectionStart ?? input.value.length;
  const end = input.selectionEnd ?? input.value.length;
  const before = input.value.slice(0, start);
  const sep = before && !before.endsWith('\n') ? '\n' : '';
  input.setRangeText(sep + text, start, end, 'end');
  input.focus();
  onLocalInput();
}

E.phrasesButton.addEventListener('click', () => toggleTool('phrases'));
E.directoryButton.addEventListener('click', () => toggleTool('directory'));
for (const b of document.querySelectorAll('.tool-close')) b.addEventListener('click', closeTools);
E.phraseFilter.addEventListener('input', renderPhrases);
E.directorySearch.addEventListener('input', searchSoon);
E.directoryRegion.addEventListener('input', searchSoon);
E.tools.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeTools(); });
