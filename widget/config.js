// The widget's configuration from the gateway (GET /api/widget-config: languages, phone line,
// quick exit address). Owns it once loaded; null if it could not be loaded.

import { fetchJson } from '/console/translate.js';

let config = null;

export function widgetConfig() { return config; }

export function loadConfig() {
  return fetchJson('/api/widget-config').then((c) => { config = c; }, () => { config = null; });
}
