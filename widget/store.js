// Session storage, the only thing the widget keeps (never localStorage, never cookies), under
// the key "tsunagu", so everything dies with the tab:
//   { lang, token, conversation, last_seq, outbox: [{id, text, at}], end_id }
// The outbox holds messages the server has not acknowledged yet, so a reload or a dropped
// connection never loses what the person wrote. The transcript itself is never stored.
// Owns the in-memory fallback used where sessionStorage is blocked (some third-party iframes).

const STORE_KEY = 'tsunagu';

let memoryStore = null;
let snapshot = () => ({});   // what to save: set once by the page, read from the parts that own it

export function loadStore() {
  try {
    const raw = window.sessionStorage.getItem(STORE_KEY);
    return raw ? (JSON.parse(raw) || {}) : {};
  } catch (e) {
    return memoryStore || {};
  }
}

export function storeFrom(fn) { snapshot = fn; }

export function saveStore() {
  const data = snapshot();
  try {
    window.sessionStorage.setItem(STORE_KEY, JSON.stringify(data));
  } catch (e) {
    memoryStore = data;
  }
}

export function wipeStore() {
  memoryStore = null;
  try { window.sessionStorage.clear(); } catch (e) { /* nothing to wipe */ }
}
