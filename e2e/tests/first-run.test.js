// Issue 17, item 19: what a newcomer sees on a first run (no escalation key, no conversation
// closed yet). The coordinator view says emergency flagging is off and how an admin turns it
// on, shows no load error and asks the server for nothing that cannot succeed; a person who
// arrives while an operator is on duty is not told a made-up wait.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, operatorPage, tid } from './harness.js';

let gw; let browser;
// Offers held back: the person stays in the queue while the operator is free.
before(async () => {
  gw = await startGateway({ TSUNAGU_CONVERSATION__AUTO_OFFER: 'false' });
  browser = await launchBrowser();
});
after(async () => { await browser?.close(); await gw?.stop(); });

test('with flagging off the coordinator view says so and how to turn it on, and retries nothing', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const asked = [];
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith('/api/escalations') || path.startsWith('/api/audit')) asked.push(path);
  });
  await page.goto(`${gw.base}/coordinator/`);
  await page.fill(tid('login-username'), 'admin');
  await page.fill(tid('login-password'), 'admin-password-1');
  await page.click(tid('login-submit'));
  await page.waitForSelector(`${tid('connection-status')}[data-state="connected"]`);
  const off = await page.waitForSelector(tid('flagging-off'), { state: 'visible' });
  const text = await off.textContent();
  assert.match(text, /緊急フラグは無効です/);
  assert.match(text, /TSUNAGU_ESCALATION__KEY/);
  // Long enough for a poll of the conversations (which also reloads records) to have run.
  await page.waitForTimeout(3000);
  assert.deepEqual(asked, [], 'no request for records or the audit trail');
  const body = await page.textContent('body');
  assert.ok(!body.includes('読み込めませんでした'), 'no load error is shown');
  assert.equal(await page.isVisible(tid('audit-panel')), false);
});

test('a person who arrives while an operator is free is not told a made-up wait', async () => {
  await operatorPage(browser, gw.base, 'sakura', 'operator-password-1');
  const context = await browser.newContext({ viewport: { width: 375, height: 667 } });
  const person = await context.newPage();
  await person.goto(`${gw.base}/widget/`);
  await person.click(tid('start-button'));
  await person.waitForSelector(`${tid('queue-status')}:has-text("1")`, { state: 'visible' });
  const status = await person.textContent(tid('queue-status'));
  assert.ok(!/目安|分/.test(status), `no minutes: ${status}`);
  assert.equal(await person.isVisible('#queue-none'), false, 'someone is on duty');
});
