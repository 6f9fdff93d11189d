// A person on the widget and an operator on the console hold a conversation in real headless
// Chromium, including a network drop and a reload on the person's side.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, startProxy, launchBrowser, operatorPage, tid, takeOffer, say } from './harness.js';

let gw; let proxy; let browser;

before(async () => {
  // The person reaches the gateway through a proxy (to cut their network): its origin is the
  // one the gateway is configured to allow, as `server.public_url` is behind a real proxy.
  proxy = await startProxy('http://127.0.0.1:9');
  gw = await startGateway({
    TSUNAGU_WIDGET__QUICK_EXIT_URL: 'http://127.0.0.1:9/harmless',
    TSUNAGU_SERVER__ALLOWED_ORIGINS: proxy.base,
  });
  proxy.retarget(gw.base);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  await gw?.stop();
});

const visible = (page, id) => page.waitForSelector(tid(id), { state: 'visible' });
const messageWith = (text) => `${tid('message')}:has-text("${text}")`;

async function visitorPage(base) {
  const context = await browser.newContext({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  await page.goto(`${base}/widget/`);
  return page;
}

test('a person and an operator hold a conversation through a network drop and a reload', async () => {
  const op = await operatorPage(browser, gw.base, 'sakura', 'operator-password-1');
  const person = await visitorPage(proxy.base);

  // The first screen states the promise before anything starts; one tap starts.
  // The texts arrive with the language catalogue, a moment after the page itself.
  await person.waitForFunction((sel) => document.querySelector(sel)?.textContent.trim() !== '', tid('privacy-notice'));
  const notice = await person.textContent(tid('privacy-notice'));
  assert.match(notice, /匿名|残/);
  await person.click(tid('start-button'));
  await visible(person, 'queue-status');

  // The operator is offered the person and accepts.
  await takeOffer(op);
  await op.waitForSelector(tid('chat-pane'));
  await person.waitForSelector(`${tid('message')}[data-from="system"]`);

  await say(person, '眠れなくて、誰かと話したいです');
  await op.waitForSelector(`${tid('message')}[data-from="visitor"]:has-text("眠れなくて")`);
  await person.waitForSelector(`${tid('message')}[data-from="visitor"][data-state="sent"]`);
  await say(op, '話しかけてくれてありがとう。ゆっくりで大丈夫ですよ');
  await person.waitForSelector(`${tid('message')}[data-from="operator"]:has-text("ゆっくりで大丈夫")`);

  // Network drop: the person sees it, both sides keep writing, nothing is lost or doubled.
  proxy.cut();
  await person.waitForSelector(`${tid('connection-status')}:not([data-state="connected"])`);
  await say(op, 'ここにいますよ');
  await say(person, '電波が悪いみたい');
  await person.waitForSelector(`${tid('message')}[data-state="pending"]`);
  proxy.restore();
  await person.waitForSelector(`${tid('connection-status')}[data-state="connected"]`, { timeout: 20000 });
  await person.waitForSelector(messageWith('ここにいますよ'));
  await op.waitForSelector(`${tid('message')}[data-from="visitor"]:has-text("電波が悪いみたい")`);
  await person.waitForSelector(`${tid('message')}[data-from="visitor"]:has-text("電波が悪いみたい")[data-state="sent"]`);
  assert.equal(await person.locator(messageWith('ここにいますよ')).count(), 1, 'operator message once');
  assert.equal(await op.locator(messageWith('電波が悪いみたい')).count(), 1, 'visitor message once');

  // A reload of the same tab resumes the same conversation with its transcript.
  const before = await person.locator(tid('message')).count();
  await person.reload();
  await person.waitForSelector(messageWith('ここにいますよ'));
  await person.waitForSelector(`${tid('connection-status')}[data-state="connected"]`);
  assert.equal(await person.locator(messageWith('眠れなくて')).count(), 1);
  assert.equal(await person.locator(tid('message')).count(), before, 'same transcript, no duplicates');
  const stored = await person.evaluate(() => JSON.stringify(Object.assign({}, sessionStorage)));
  assert.doesNotMatch(stored, /眠れなくて/, 'the transcript itself is not kept on the device');
  const local = await person.evaluate(() => localStorage.length);
  assert.equal(local, 0, 'nothing in localStorage');

  // The person ends; the operator wraps up.
  await person.click(tid('end-button'));
  await person.click(tid('end-confirm'));
  await visible(person, 'ended-screen');
  await op.waitForSelector(tid('wrapup-category'), { state: 'visible' });
  await op.selectOption(tid('wrapup-category'), 'loneliness');
  await op.click(tid('wrapup-submit'));
  await op.waitForSelector(tid('conversation-tab'), { state: 'detached' });
  assert.equal(await person.evaluate(() => sessionStorage.length), 0, 'session storage wiped at the end');

  // The gateway logged no message text.
  assert.doesNotMatch(gw.logs(), /眠れなくて|ここにいますよ|電波が悪い/);
  await op.context().close();
  await person.context().close();
});

test('quick exit replaces the page and leaves nothing in session storage', async () => {
  const person = await visitorPage(gw.base);
  await person.click(tid('start-button'));
  await visible(person, 'queue-status');
  assert.ok(await person.evaluate(() => sessionStorage.length) > 0);
  await Promise.all([
    person.waitForURL(/127\.0\.0\.1:9\/harmless/, { waitUntil: 'commit' }).catch(() => {}),
    person.click(tid('quick-exit')),
  ]);
  await person.waitForFunction(() => !location.pathname.startsWith('/widget'), null, { timeout: 10000 }).catch(() => {});
  assert.match(person.url(), /harmless|chrome-error/);
  // The conversation ended with the exit: nobody is left waiting for a person who has gone.
  const dash = await (await fetch(`${gw.base}/metrics`)).text();
  assert.match(dash, /tsunagu_conversations_ended_total\{outcome="abandoned"\} [1-9]/);
  // Back on the widget in the same tab: no conversation to resume.
  await person.goto(`${gw.base}/widget/`);
  assert.equal(await person.evaluate(() => sessionStorage.length), 0);
  await visible(person, 'start-button');
  await person.context().close();
});

test('the embeddable script opens the chat on a host page', async () => {
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`${gw.base}/widget/demo.html`);
  const launcher = page.locator('button', { hasText: /相談|Talk/ }).first();
  await launcher.click();
  const frame = page.frameLocator('iframe');
  await frame.locator(tid('start-button')).waitFor();
  assert.deepEqual(errors.filter((e) => /Content Security Policy/i.test(e)), [], 'no CSP violations');
  await context.close();
});

test('the coordinator view shows live numbers', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${gw.base}/coordinator/`);
  await page.fill(tid('login-username'), 'coord');
  await page.fill(tid('login-password'), 'coordinator-password');
  await page.click(tid('login-submit'));
  await page.waitForSelector(tid('stat-waiting'));
  await page.waitForFunction((sel) => /\d/.test(document.querySelector(sel)?.textContent || ''), tid('stat-waiting'));
  const before = Number((await page.textContent(tid('stat-waiting'))).trim());
  const person = await visitorPage(gw.base);
  await person.click(tid('start-button'));
  await page.waitForFunction(([sel, n]) => Number(document.querySelector(sel)?.textContent.trim()) === n,
    [tid('stat-waiting'), before + 1], { timeout: 10000 });
  await person.context().close();
  await context.close();
});
