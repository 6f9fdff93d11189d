// The widget's words: the message catalogue in use (widget/i18n/<lang>.json, Japanese first,
// "やさしい日本語" and English), t(), the data-i18n attributes, the language menu, and the texts
// built from the catalogue and the configuration (other helplines, the phone line). Owns the
// catalogue and the language. A missing key is an empty string: nothing half-translated shows.

import { interpolate, fetchCatalogue, fetchJson } from '/console/translate.js';
import { $, coarsePointer } from './dom.js';
import { widgetConfig } from './config.js';
import { saveStore } from './store.js';

export const CATALOGUES = ['ja', 'ja-easy', 'en']; // UI languages shipped in i18n/
export const DEFAULT_LANG = 'ja';

let cat = {};
let lang = DEFAULT_LANG;
// The other helplines from the gateway's referral directory (GET /api/helplines?lang=), for
// the language they were asked in; until they come (or if they cannot), the catalogue's list.
let served = null;
const listeners = [];   // redraws of texts held elsewhere (connection, queue, counter)

export function currentLang() { return lang; }
export function catalogue() { return cat; }

export function t(key, vars) {
  const s = cat[key];
  if (typeof s !== 'string') return '';
  return interpolate(s, vars);
}

export function loadCatalogue(wanted) {
  // Relative to the page: /widget/ and /widget/chat.html both resolve to /widget/i18n/.
  return fetchCatalogue(`i18n/${encodeURIComponent(wanted)}.json`).then((c) => {
    cat = c;
    lang = wanted;
  });
}

/** `fn` redraws texts a part holds, after every applyTexts. */
export function onTexts(fn) { listeners.push(fn); }

export function applyTexts(root) {
  root = root || document;
  let nodes = root.querySelectorAll('[data-i18n]');
  for (let i = 0; i < nodes.length; i++) nodes[i].textContent = t(nodes[i].getAttribute('data-i18n'));
  nodes = root.querySelectorAll('[data-i18n-aria-label]');
  for (let i = 0; i < nodes.length; i++) nodes[i].setAttribute('aria-label', t(nodes[i].getAttribute('data-i18n-aria-label')));
  nodes = root.querySelectorAll('[data-i18n-placeholder]');
  for (let i = 0; i < nodes.length; i++) nodes[i].setAttribute('placeholder', t(nodes[i].getAttribute('data-i18n-placeholder')));
  document.documentElement.lang = cat.html_lang || lang;
  document.title = t('page_title');
  $('enter-hint').textContent = coarsePointer.matches ? '' : t('input_hint_enter');
  renderHelplines();
  renderPhone();
  renderLangSelect();
  for (const fn of listeners) fn();
}

/** The language sent to the gateway for routing: plain Japanese is Japanese. */
export function wireLang(l) {
  return l === 'ja-easy' ? 'ja' : l;
}

function availableLangs() {
  const config = widgetConfig();
  const fromConfig = (config && Array.isArray(config.languages) && config.languages.length)
    ? config.languages : ['ja', 'en'];
  const out = [];
  fromConfig.forEach((l) => {
    if (CATALOGUES.indexOf(l) >= 0 && out.indexOf(l) < 0) out.push(l);
    if (l === 'ja' && out.indexOf('ja-easy') < 0) out.push('ja-easy');
  });
  if (out.indexOf(lang) < 0) out.unshift(lang);
  return out;
}

function renderLangSelect() {
  const sel = $('lang-select');
  const names = cat.language_names || {};
  sel.textContent = '';
  availableLangs().forEach((l) => {
    const opt = document.createElement('option');
    opt.value = l;
    opt.textContent = names[l] || l;
    if (l === 'en') opt.lang = 'en'; else opt.lang = 'ja';
    if (l === lang) opt.selected = true;
    sel.appendChild(opt);
  });
}

function onLangChange() {
  const wanted = $('lang-select').value;
  if (CATALOGUES.indexOf(wanted) < 0 || wanted === lang) return;
  loadCatalogue(wanted).then(() => {
    saveStore();
    applyTexts();
    refreshHelplines();
    $('lang-select').focus();
  }, () => {
    renderLangSelect(); // could not load: stay on the current language
  });
}

function renderPhone() {
  const config = widgetConfig();
  const phone = config && config.phone;
  const has = !!(phone && phone.number);
  $('phone-choice').hidden = !has;
  $('queue-phone').hidden = !has;
  if (!has) return;
  const href = `tel:${String(phone.number).replace(/[^0-9+#*]/g, '')}`;
  $('phone-link').href = href;
  $('phone-number').textContent = phone.number;
  const hours = $('phone-hours');
  hours.hidden = !phone.hours;
  hours.textContent = phone.hours ? t('phone_hours', { hours: phone.hours }) : '';
  const ql = $('queue-phone-link');
  ql.href = href;
  ql.textContent = `${t('phone_button')} ${phone.number}${phone.hours ? ` (${t('phone_hours', { hours: phone.hours })})` : ''}`;
}

/**
 * Asks the gateway for the other helplines in the current language (entries of its referral
 * directory marked for closing messages) and redraws the lists; called at start, on a change
 * of language and when a conversation ends, so an admin's edit shows at the next close.
 */
export function refreshHelplines() {
  const asked = lang;
  return fetchJson(`/api/helplines?lang=${encodeURIComponent(asked)}`).then((items) => {
    if (!Array.isArray(items) || asked !== lang) return;
    served = { lang: asked, items };
    renderHelplines();
  }, () => {});
}

function renderHelplines() {
  const lists = document.querySelectorAll('[data-helplines]');
  const items = served && served.lang === lang
    ? served.items
    : (Array.isArray(cat.helplines) ? cat.helplines : []);
  for (let i = 0; i < lists.length; i++) {
    const ul = lists[i];
    ul.textContent = '';
    items.forEach((h) => {
      const li = document.createElement('li');
      const name = document.createElement('span');
      name.className = 'helpline-name';
      name.textContent = h.name;
      li.appendChild(name);
      if (h.note) {
        const note = document.createElement('span');
        note.className = 'helpline-note';
        note.textContent = h.note;
        li.appendChild(note);
      }
      const a = document.createElement('a');
      a.className = 'tel-link helpline-number';
      a.href = `tel:${String(h.number).replace(/[^0-9+#*]/g, '')}`;
      // The visible number is the link's name (WCAG 2.5.3); the organisation's name beside it
      // gives the context, and the description says what the link does.
      a.textContent = h.number;
      a.title = t('call_label', { name: h.name, number: h.number });
      li.appendChild(a);
      ul.appendChild(li);
    });
  }
}

$('lang-select').addEventListener('change', onLangChange);
