// The on-call panel's per-person channels (issue 21, item 3): a coordinator gives a person a
// phone number for alert calls and turns their LINE alerts off; the server keeps both, the panel
// shows them again after a reload, and says whether the person's LINE account is linked (never
// the LINE id). A number that is not E.164 is refused with the panel's error line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, tid } from './harness.js';

let gw; let browser;

before(async () => {
  // The phone connector on (its provider is never called here): the panel offers phone numbers.
  gw = await startGateway({
    TSUNAGU_VOICE__ENABLED: 'true',
    TSUNAGU_VOICE__API_BASE: 'http://127.0.0.1:9',
    TWILIO_ACCOUNT_SID: 'AC00000000000000000000000000000000',
    TWILIO_AUTH_TOKEN: 'e2e-token',
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

test('a coordinator sets a phone number and LINE off for a person, and a bad number is refused', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${gw.base}/coordinator/`);
  await page.fill(tid('login-username'), 'coord');
  await page.fill(tid('login-password'), 'coordinator-password');
  await page.click(tid('login-submit'));
  await page.waitForSelector(`${tid('oncall-line-state')}:not(:empty)`);
  assert.match(await page.textContent(tid('oncall-line-state')), /未連携/);
  const person = await page.inputValue('#oncall-channels-account');
  await page.fill('#oncall-channels-phone', '+819012345678');
  await page.uncheck('#oncall-channels-line');
  await page.click('#oncall-channels-form button[type="submit"]');
  const saved = async () => {
    const r = await page.evaluate(async () => (await fetch('/api/oncall')).json());
    return r.channels.find((c) => c.account === r.accounts[0].id && c.phone);
  };
  await page.waitForFunction(async () => {
    const r = await (await fetch('/api/oncall')).json();
    return r.channels.some((c) => c.phone === '+819012345678');
  });
  const c = await saved();
  assert.equal(c.account, person);
  assert.equal(c.line_enabled, false);
  await page.reload();
  await page.waitForSelector(`${tid('oncall-line-state')}:not(:empty)`);
  assert.equal(await page.inputValue('#oncall-channels-phone'), '+819012345678');
  assert.equal(await page.isChecked('#oncall-channels-line'), false);
  // Not E.164: the browser's own check first, then the server's (the pattern removed).
  await page.evaluate(() => document.getElementById('oncall-channels-phone').removeAttribute('pattern'));
  await page.fill('#oncall-channels-phone', '090-1234-5678');
  await page.click('#oncall-channels-form button[type="submit"]');
  await page.waitForSelector('#oncall-status:not([hidden])');
  // The error stays, the form keeps what was typed, the server kept the good number.
  assert.notEqual((await page.textContent('#oncall-status')).trim(), '');
  assert.equal(await page.inputValue('#oncall-channels-phone'), '090-1234-5678');
  assert.equal((await saved()).phone, '+819012345678');
  assert.equal(await page.isHidden('#oncall-status'), false);
  await context.close();
});
