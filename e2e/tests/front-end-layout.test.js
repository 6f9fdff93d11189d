// The front ends stay in small native ES modules (issue 18, item 5): no file grows back into one
// large script, every page loads its code as a module, and the parts shared by the console, the
// coordinator view and the widget exist once. Reads the files only; no browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = new URL('../../', import.meta.url).pathname;
const FOLDERS = ['operator-console', 'widget'];
const MAX_LINES = 500;

function files(dir, ext) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...files(path, ext));
    else if (name.endsWith(ext)) out.push(path);
  }
  return out;
}

const scripts = FOLDERS.flatMap((f) => files(join(ROOT, f), '.js'));
const pages = FOLDERS.flatMap((f) => files(join(ROOT, f), '.html'));

test('no front-end script is longer than 500 lines', () => {
  const long = scripts
    .map((p) => [relative(ROOT, p), readFileSync(p, 'utf8').split('\n').length])
    .filter(([, n]) => n > MAX_LINES);
  assert.deepEqual(long, []);
});

test('every page of the widget and the console loads its code as a module', () => {
  for (const page of pages) {
    const html = readFileSync(page, 'utf8');
    for (const tag of html.match(/<script\b[^>]*>/g) || []) {
      // The demo host page embeds the widget the way a third-party site does: one classic script.
      if (tag.includes('tsunagu-widget.js')) continue;
      assert.match(tag, /type="module"/, `${relative(ROOT, page)}: ${tag}`);
    }
  }
});

test('the flag dialog, ulid and the character count are written once', () => {
  const where = (re) => [...scripts, ...pages].filter((p) => re.test(readFileSync(p, 'utf8'))).map((p) => relative(ROOT, p));
  assert.deepEqual(where(/id="flag-dialog"/), ['operator-console/flag-dialog.js']);
  assert.deepEqual(where(/function ulid\(/), ['operator-console/ulid.js']);
  assert.deepEqual(where(/function charCount\(/), ['operator-console/counter.js']);
});
