// Tiny message catalogue for the operator console, coordinator view and setup page.
// Japanese is the default; English is the alternative. Elements carrying
// data-i18n="key" (and optionally data-i18n-vars='{"n":1}') are translated by
// applyI18n(); data-i18n-placeholder / -aria-label / -title do the same for attributes.
// The catalogues themselves are i18n/ja.js and i18n/en.js, with the sign-in steps' and the
// admin screen's accounts messages in i18n/ja-accounts.js and i18n/en-accounts.js, its
// directory, phrases and settings messages in i18n/ja-directory.js and i18n/en-directory.js,
// the on-call panel's LINE and phone messages in i18n/ja-oncall.js and i18n/en-oncall.js.

import { interpolate } from '/console/translate.js';

import ja from '/console/i18n/ja.js';
import en from '/console/i18n/en.js';
import jaAccounts from '/console/i18n/ja-accounts.js';
import enAccounts from '/console/i18n/en-accounts.js';
import jaDirectory from '/console/i18n/ja-directory.js';
import enDirectory from '/console/i18n/en-directory.js';
import jaOncall from '/console/i18n/ja-oncall.js';
import enOncall from '/console/i18n/en-oncall.js';

const catalogue = {
  ja: { ...ja, ...jaAccounts, ...jaDirectory, ...jaOncall },
  en: { ...en, ...enAccounts, ...enDirectory, ...enOncall },
};

export const LANGS = Object.keys(catalogue);
const STORAGE_KEY = 'tsunagu.console.lang';
let current = 'ja';
try {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && catalogue[saved]) current = saved;
} catch (_) { /* storage unavailable: stay with ja */ }

const listeners = new Set();

export function getLang() { return current; }

export function has(key) {
  return Object.prototype.hasOwnProperty.call(catalogue[current], key) ||
    Object.prototype.hasOwnProperty.call(catalogue.ja, key);
}

/** Translate key, replacing {name} placeholders with vars. Unknown keys return the key. */
export function t(key, vars) {
  let s = catalogue[current][key];
  if (s === undefined) s = catalogue.ja[key];
  if (s === undefined) return key;
  return interpolate(s, vars);
}

/** Set text of el from key (and remember it so a language switch re-translates it). */
export function setText(el, key, vars) {
  el.dataset.i18n = key;
  if (vars) el.dataset.i18nVars = JSON.stringify(vars);
  else delete el.dataset.i18nVars;
  el.textContent = t(key, vars);
  return el;
}

function varsOf(el) {
  const raw = el.dataset.i18nVars;
  if (!raw) return undefined;
  try { return JSON.parse(raw); } catch (_) { return undefined; }
}

export function applyI18n(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n, varsOf(el));
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
}

export function setLang(lang) {
  if (!catalogue[lang]) return;
  current = lang;
  try { localStorage.setItem(STORAGE_KEY, lang); } catch (_) { /* ignore */ }
  document.documentElement.lang = lang;
  applyI18n(document);
  for (const fn of listeners) {
    try { fn(lang); } catch (e) { console.error(e); }
  }
}

export function onLangChange(fn) { listeners.add(fn); }

/** Wire a <select> as the language switch and translate the page once. */
export function initI18n(select) {
  document.documentElement.lang = current;
  if (select) {
    select.value = current;
    select.addEventListener('change', () => setLang(select.value));
  }
  applyI18n(document);
}
