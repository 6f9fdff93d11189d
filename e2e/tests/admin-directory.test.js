// Issue 20: an admin edits a referral entry marked for closing messages on the admin screen;
// the operator's directory search by topic shows it open now, and when the person's
// conversation closes, the widget's closing screen lists the edited entry (served by the
// gateway from the database, not the widget's compiled-in catalogue).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, tid, operatorPage, takeOffer, say } from './harness.js';

let gw; let browser;
before(async () => { gw = await startGateway(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await gw?.stop(); });

const NAME = 'E2E編集済み相談窓口';
const TOPIC = 'e2e話題';

test('an entry an admin edits shows in the operator search and the widget closing screen', async () => {
  // The admin signs in and edits the seeded #いのちSOS entry (marked for closing messages).
  const adminContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const admin = await adminContext.newPage();
  await admin.goto(`${gw.base}/admin`);
  await admin.fill(tid('login-username'), 'admin');
  await admin.fill(tid('login-password'), 'admin-password-1');
  await admin.click(tid('login-submit'));
  await admin.click('#admin-tabs button[data-tab="directory"]');
  const row = `#admin-tab-directory ${tid('dir-row')}[data-id="inochi-sos"]`;
  await admin.waitForSelector(row);
  assert.match(await admin.textContent(row), /要確認/, 'seeded entries are to be verified');
  await admin.click(`${row} ${tid('dir-edit')}`);
  await admin.fill('#dir-field-name', NAME);
  await admin.fill('#dir-field-hours', 'daily 00:00-24:00');
  await admin.fill('#dir-field-hours_note', '毎日24時間');
  await admin.fill('#dir-field-topics', TOPIC);
  await admin.check('#dir-field-verified');
  assert.equal(await admin.isChecked('#dir-field-for_closing'), true);
  await admin.click(tid('dir-save'));
  await admin.waitForSelector(`${row}:has-text("${NAME}")`);
  assert.doesNotMatch(await admin.textContent(row), /要確認/);

  // A wrong hours value is refused with the reason, and nothing changes.
  await admin.click(`${row} ${tid('dir-edit')}`);
  await admin.fill('#dir-field-hours', 'sometimes');
  await admin.click(tid('dir-save'));
  await admin.waitForSelector(`${tid('dir-form-error')}:has-text("hours")`);
  await admin.click('#admin-tab-directory form .btn-ghost');

  // A person reaches out; the operator finds the entry by topic, open now.
  const op = await operatorPage(browser, gw.base, 'sakura', 'operator-password-1');
  const personContext = await browser.newContext({ viewport: { width: 375, height: 667 } });
  const person = await personContext.newPage();
  await person.goto(`${gw.base}/widget/`);
  await person.click(tid('start-button'));
  await takeOffer(op);
  await say(person, 'こんにちは');
  await op.click(tid('directory-button'));
  await op.fill(tid('directory-search'), TOPIC);
  const entry = `${tid('directory-entry')}[data-entry-id="inochi-sos"]`;
  // Only the entry about the topic, once the search has answered.
  await op.waitForFunction(() => document.querySelectorAll('[data-testid="directory-entry"]').length === 1);
  await op.waitForSelector(entry);
  assert.match(await op.textContent(entry), new RegExp(NAME));
  await op.waitForSelector(`${entry} ${tid('directory-open-now')}`);

  // The person ends; the closing screen lists the edited entry with its number.
  await person.click(tid('end-button'));
  await person.click(tid('end-confirm'));
  await person.waitForSelector(tid('ended-screen'), { state: 'visible' });
  await person.waitForSelector(`#screen-ended [data-helplines] li:has-text("${NAME}")`);
  const list = await person.textContent('#screen-ended [data-helplines]');
  assert.match(list, /0120-061-338/);
  assert.doesNotMatch(list, /#いのちSOS/, 'the old name is gone');
  await adminContext.close();
  await personContext.close();
  await op.context().close();
});
