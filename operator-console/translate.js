// Message catalogues, shared by the console pages and the widget: filling {name} placeholders
// and fetching a JSON catalogue. Each front end keeps its own catalogues (the console's in
// i18n.js, the widget's in widget/i18n/*.json) and its own rule for a missing key.

/** `s` with each {name} replaced by vars[name]; a placeholder without a value stays as written. */
export function interpolate(s, vars) {
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (m, name) => (vars[name] === undefined || vars[name] === null ? m : String(vars[name])));
}

/** Fetches JSON without cookies; rejects on a non-2xx answer. */
export function fetchJson(url) {
  return fetch(url, { credentials: 'omit', cache: 'no-cache' }).then((res) => {
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.json();
  });
}

/** Fetches a JSON message catalogue (an object of key -> text). */
export const fetchCatalogue = fetchJson;
