// Emergency flag and escalation (DESIGN.md principle 3, docs/protocol.md "Emergency flag and
// escalation") in real headless Chromium against the real gateway: an operator records a flag
// with a confirm step, the coordinator is alerted, acknowledges and reads the encrypted record
// (which is audited), the operator is offered a pause after the conversation closes; and a
// coordinator raises and clears a flag from the conversations panel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startGateway, launchBrowser, operatorPage, tid, takeOffer, say } from './harness.js';

let gw; let browser; let escDir;

// Distinctive text that must end up in the encrypted record and nowhere in plain text.
const CANARY = 'あおいカナリア7319';
const VISITOR_TEXT = `今夜はもう消えてしまいたい ${CANARY}`;
const REASON = '希死念慮の表明あり、具体的な手段に言及 みどりの理由4821';

before(async () => {
  escDir = mkdtempSync(join(tmpdir(), 'tsunagu-esc-'));
  gw = await startGateway({
    TSUNAGU_ESCALATION__KEY: randomBytes(32).toString('hex'),
    // The organisation's database (escalation records among its tables) in a folder of the
    // test's own, so every file of it can be searched below.
    TSUNAGU_DATABASE__SQLITE_PATH: join(escDir, 'tsunagu.db'),
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  if (escDir) rmSync(escDir, { recursive: true, force: true });
});

const visible = (page, selector) => page.waitForSelector(selector, { state: 'visible' });

/** Collects script errors and CSP violations of a page. */
function watchErrors(page, errors) {
  page.on('pageerror', (e) => errors.push(`${page.url()}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Uncaught|TypeError|ReferenceError/i.test(m.text())) {
      errors.push(`${page.url()}: ${m.text()}`);
    }
  });
  return page;
}

async function staffPage(path, username, password) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${gw.base}${path}`);
  await page.fill(tid('login-username'), username);
  await page.fill(tid('login-password'), password);
  await page.click(tid('login-submit'));
  await page.waitForSelector(`${tid('connection-status')}[data-state="connected"]`);
  return page;
}

const coordinatorPage = (username, password) => staffPage('/coordinator/', username, password);

async function visitorStarts() {
  const context = await browser.newContext({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  await page.goto(`${gw.base}/widget/`);
  await page.click(tid('start-button'));
  await visible(page, tid('queue-status'));
  return page;
}

/** The operator accepts the offer; returns the conversation id. */
async function acceptOffer(op) {
  await takeOffer(op);
  await op.waitForSelector(`${tid('chat-pane')}:not([data-conversation=""])`, { state: 'visible' });
  return op.getAttribute(tid('chat-pane'), 'data-conversation');
}

/** Fills the flag dialog (operator console or coordinator view) and confirms. */
async function raiseFlag(page, category, reason) {
  await visible(page, tid('flag-category'));
  await page.selectOption(tid('flag-category'), category);
  await page.fill(tid('flag-reason'), reason);
  await page.click(tid('flag-submit'));
  await visible(page, tid('flag-confirm'));
  const explanation = await page.textContent(tid('flag-confirm-text'));
  assert.match(explanation, /暗号化/, 'the confirm step says the record is encrypted');
  assert.match(explanation, /コーディネーター/, 'the confirm step says coordinators are alerted');
  await page.click(tid('flag-confirm'));
  await page.waitForSelector(tid('flag-dialog'), { state: 'hidden' });
}

/**
 * An operator and a coordinator signed in (their script errors collected in `errors`), and a
 * person whose offer the operator accepted: the three pages and the conversation id.
 */
async function talking(errors) {
  const op = watchErrors(await operatorPage(browser, gw.base, 'sakura', 'operator-password-1'), errors);
  const coord = watchErrors(await coordinatorPage('coord', 'coordinator-password'), errors);
  const person = await visitorStarts();
  const conv = await acceptOffer(op);
  return { op, coord, person, conv };
}

function filesUnder(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

test('an operator flags an emergency: coordinator alerted, record read and audited, pause offered', async () => {
  const errors = [];
  const { op, coord, person, conv } = await talking(errors);
  assert.ok(conv, 'the chat pane names the conversation');
  await say(person, VISITOR_TEXT);
  await op.waitForSelector(`${tid('message')}[data-from="visitor"]:has-text("${CANARY}")`);

  // No emergency yet: no banner, the button offers to record a flag.
  assert.equal(await op.isHidden(tid('emergency-banner')), true);
  assert.equal((await op.textContent(tid('flag-button'))).trim(), '緊急フラグ');

  // Flag with category, reason and an explicit confirm step. Cancelling first sends nothing.
  await op.click(tid('flag-button'));
  await visible(op, tid('flag-dialog'));
  const labels = await op.$$eval(`${tid('flag-category')} option`, (os) => os.map((o) => `${o.value}=${o.textContent}`));
  for (const want of ['self_harm=自殺・自傷のおそれ', 'harm_to_others=他者への危害のおそれ', 'abuse_dv=虐待・DV',
    'medical=急を要する医療', 'crime=犯罪の疑い', 'other=その他']) {
    assert.ok(labels.includes(want), `category option ${want}`);
  }
  await op.click(tid('flag-submit'));
  assert.equal(await op.isHidden(tid('flag-confirm')), true, 'no confirm step without category and reason');
  await raiseFlag(op, 'self_harm', REASON);

  // The operator's banner, checklist, tab marker and button.
  await visible(op, tid('emergency-banner'));
  assert.match(await op.textContent(tid('emergency-banner')), /自殺・自傷のおそれ/);
  await visible(op, tid('emergency-checklist'));
  await op.waitForSelector(`${tid('conversation-tab')}[data-conversation="${conv}"][data-emergency="true"]`);
  assert.equal((await op.textContent(tid('flag-button'))).trim(), 'フラグを追加');
  const checks = op.locator(`${tid('emergency-checklist')} input[type="checkbox"]`);
  assert.ok(await checks.count() > 0, 'the checklist from welcome.emergency_checklist is shown');
  await checks.first().check();
  assert.equal(await checks.first().isChecked(), true, 'a checklist item can be ticked');

  // The coordinator: an emergency alert with category and operator, acknowledged.
  const alert = `${tid('alert')}[data-kind="emergency"]`;
  await visible(coord, `${alert}[data-acknowledged="false"]`);
  const alertText = await coord.textContent(alert);
  assert.match(alertText, /自殺・自傷のおそれ/);
  assert.match(alertText, /Sakura/);
  await coord.click(`${alert} ${tid('alert-ack')}`);
  await coord.waitForSelector(`${alert}[data-acknowledged="true"]`);
  // Open emergencies list and the conversations panel.
  const emRow = `${tid('emergency-row')}[data-conversation="${conv}"]`;
  await visible(coord, emRow);
  assert.match(await coord.textContent(emRow), /Sakura/);
  await visible(coord, `${emRow}[data-acknowledged="true"]:has-text("Coordinator")`);
  await visible(coord, `${tid('conversation-row')}[data-conversation="${conv}"][data-emergency="true"]`);
  // The operator's banner learns who acknowledged.
  await op.waitForSelector(`${tid('emergency-acked')}[data-acknowledged="true"]:has-text("Coordinator")`);

  // The coordinator reads the record: audit notice, the person's words in the transcript.
  const escRow = `${tid('escalation-row')}[data-conversation="${conv}"]`;
  await visible(coord, escRow);
  await coord.click(`${escRow} ${tid('escalation-view')}`);
  await visible(coord, tid('escalation-record'));
  assert.match(await coord.textContent(tid('audit-notice')), /監査/);
  await visible(coord, `${tid('transcript-entry')}[data-from="visitor"]:has-text("${CANARY}")`);
  assert.match(await coord.textContent(tid('record-flags')), /みどりの理由4821/);
  await coord.click(tid('escalation-close'));
  await coord.waitForSelector(tid('escalation-record'), { state: 'hidden' });
  assert.equal(await coord.locator(tid('transcript-entry')).count(), 0, 'the decrypted content leaves the page on close');

  // End and wrap up: the server suggests a pause, the console offers it.
  await op.click(tid('end-button'));
  await op.click(tid('end-confirm'));
  await visible(op, tid('wrapup-category'));
  await op.selectOption(tid('wrapup-category'), 'health');
  await op.click(tid('wrapup-submit'));
  await visible(op, tid('pause-offer'));
  await visible(op, tid('pause-decline'));
  await op.click(tid('pause-accept'));
  await op.waitForSelector(tid('pause-offer'), { state: 'hidden' });
  await op.waitForFunction((sel) => document.querySelector(sel)?.value === 'away', tid('presence-select'));

  // Encrypted at rest: the record exists, but neither the person's words nor the reason are
  // readable in any file of the database; and no log line carries them.
  // The database file and its write-ahead log: a sealed record starts with its magic `TSG1`.
  const files = filesUnder(escDir);
  assert.ok(files.some((f) => readFileSync(f).includes(Buffer.from('TSG1'))), 'an escalation record was written');
  for (const f of files) {
    const bytes = readFileSync(f);
    for (const secret of [CANARY, 'みどりの理由4821']) {
      assert.equal(bytes.includes(Buffer.from(secret, 'utf8')), false, `${secret} in plain text in ${f}`);
    }
  }
  assert.doesNotMatch(gw.logs(), new RegExp(`${CANARY}|みどりの理由4821`));

  // The audit trail: admins see the coordinator's read; coordinators do not get the panel.
  assert.equal(await coord.isHidden(tid('audit-panel')), true, 'no audit panel for a coordinator');
  const admin = watchErrors(await coordinatorPage('admin', 'admin-password-1'), errors);
  await visible(admin, tid('audit-panel'));
  await visible(admin, `${tid('audit-row')}[data-action="view"]:has-text("Coordinator")`);

  assert.deepEqual(errors, [], 'no script errors or CSP violations');
  for (const p of [op, coord, person, admin]) await p.context().close();
});

test('a coordinator raises and clears a flag from the conversations panel', async () => {
  const errors = [];
  const { op, coord, person, conv } = await talking(errors);
  await say(person, 'お腹が痛くて動けない');
  await op.waitForSelector(`${tid('message')}[data-from="visitor"]:has-text("動けない")`);

  const row = `${tid('conversation-row')}[data-conversation="${conv}"]`;
  await visible(coord, `${row}[data-emergency="false"]`);
  assert.match(await coord.textContent(row), /Sakura/);
  await coord.click(`${row} ${tid('coord-flag')}`);
  await raiseFlag(coord, 'medical', '強い腹痛で動けないとの訴え');
  await visible(coord, `${row}[data-emergency="true"]`);
  assert.match(await coord.textContent(row), /急を要する医療/);

  // The operator holding the conversation sees it at once.
  await visible(op, tid('emergency-banner'));
  assert.match(await op.textContent(tid('emergency-banner')), /急を要する医療/);
  await op.waitForSelector(`${tid('conversation-tab')}[data-conversation="${conv}"][data-emergency="true"]`);

  // Clearing needs a reason; the record stays (closed flag).
  await coord.click(`${row} ${tid('coord-clear')}`);
  await visible(coord, tid('clear-reason'));
  await coord.click(tid('clear-submit'));
  assert.equal(await coord.isVisible(tid('clear-dialog')), true, 'no clear without a reason');
  await coord.fill(tid('clear-reason'), '救急車の手配を本人が自分でできたため');
  await coord.click(tid('clear-submit'));
  await visible(coord, `${row}[data-emergency="false"]`);
  await op.waitForSelector(tid('emergency-banner'), { state: 'hidden' });
  await op.waitForSelector(`${tid('conversation-tab')}[data-conversation="${conv}"]:not([data-emergency])`);
  // The record stays, with the clearing and its reason in its actions.
  const escRow = `${tid('escalation-row')}[data-conversation="${conv}"]`;
  await visible(coord, `${escRow}[data-open="true"]`);
  await coord.click(`${escRow} ${tid('escalation-view')}`);
  await visible(coord, `${tid('record-action')}[data-action="flag_cleared"]:has-text("救急車の手配")`);
  await coord.click(tid('escalation-close'));

  // Clean up: the person ends, the operator wraps up.
  await person.click(tid('end-button'));
  await person.click(tid('end-confirm'));
  await visible(op, tid('wrapup-category'));
  await op.selectOption(tid('wrapup-category'), 'health');
  await op.click(tid('wrapup-submit'));
  await op.waitForSelector(`${tid('conversation-tab')}[data-conversation="${conv}"]`, { state: 'detached' });
  // Once closed, the record is complete (the list is refreshed by hand: listing is audited).
  await coord.waitForFunction((sel) => {
    if (document.querySelector(sel)) return true;
    document.querySelector('[data-testid="escalations-refresh"]').click();
    return false;
  }, `${escRow}[data-open="false"]`, { polling: 1000, timeout: 15000 });
  assert.deepEqual(errors, [], 'no script errors or CSP violations');
  for (const p of [op, coord, person]) await p.context().close();
});
