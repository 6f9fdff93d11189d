// The character counter: how long a text is the way the server counts it (Unicode scalar
// values, not UTF-16 units, so an emoji counts once), and the "n / max" readout beside a field,
// marked `over` past the limit so the person sees it before the server refuses the text.

/** Length in Unicode scalar values (what the server counts). */
export function charCount(s) { return Array.from(s).length; }

/** Writes "n / max" for `text` into `node` and marks it `over` past `max`; returns n. */
export function renderCount(node, text, max) {
  const n = charCount(text);
  node.textContent = `${n} / ${max}`;
  node.classList.toggle('over', n > max);
  return n;
}
