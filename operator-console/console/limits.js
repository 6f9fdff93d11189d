// What the gateway accepts, from `welcome.limits` (docs/protocol.md, "Limits"). Owns the limits;
// the defaults only cover the moment before the first welcome. `text` is chat text, `note` a
// transfer note or a flag reason, both in characters.

const limits = { text: 4000, note: 500 };

/** The longest chat message, in characters. */
export const maxText = () => limits.text;

/** The longest transfer note or flag reason, in characters. */
export const maxNote = () => limits.note;

/** Takes the limits from `welcome.limits`; a missing or odd value keeps the one before. */
export function readLimits(l) {
  if (!l || typeof l !== 'object') return;
  if (Number.isInteger(l.max_text) && l.max_text > 0) limits.text = l.max_text;
  if (Number.isInteger(l.max_note) && l.max_note > 0) limits.note = l.max_note;
  for (const id of ['transfer-note', 'flag-reason']) {
    const field = document.getElementById(id);
    if (field) field.maxLength = limits.note;
  }
}
