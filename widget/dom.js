// Where the widget runs, read once at load: the page's elements by id, whether it is framed
// (embedded on a host page), the query string, and whether the pointer is coarse (a phone).

export function $(id) { return document.getElementById(id); }

export const inIframe = (() => {
  try { return window.self !== window.top; } catch (e) { return true; }
})();

export const params = new URLSearchParams(location.search);

export const embedded = inIframe || params.get('embedded') === '1';

export const coarsePointer = window.matchMedia ? window.matchMedia('(pointer: coarse)') : { matches: false };
