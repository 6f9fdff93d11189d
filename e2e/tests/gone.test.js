// Issue 17, item 14: the store loses a live conversation (a Redis without persistence that
// restarts; here FLUSHALL, which leaves the gateway's connection up, so only the gateway's own
// check can notice). The person, who sends nothing, is told in their language that the
// conversation could not go on, sees other helplines and can start again; the operator's
// console drops the conversation with a notice that stays.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { startGateway, startRedis, launchBrowser, operatorPage, tid, takeOffer, say } from './harness.js';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let redis; let gw; let browser;

/** Serious and critical axe-core violations of the page (as in accessibility.test.js). */
async function violations(page) {
  await page.addScriptTag({ content: AXE }).catch(async () => page.evaluate(AXE));
  const found = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  return found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

before(async () => {
  redis = await startRedis();
  gw = await startGateway({
    TSUNAGU_STORE__URL: redis.url,
    TSUNAGU_STORE__KEY_PREFIX: 'e2e-gone',
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  await redis?.stop();
});

/** Sends FLUSHALL to the test's own redis-server. */
function flushAll(url) {
  const { port, hostname } = new URL(url);
  return new Promise((resolve, reject) => {
    const c = net.connect(Number(port), hostname, () => c.write('*1\r\n$8\r\nFLUSHALL\r\n'));
    c.once('data', (d) => { c.destroy(); String(d).startsWith('+OK') ? resolve() : reject(new Error(String(d))); });
    c.on('error', reject);
  });
}

test('a conversation the store lost is explained to the person with other helplines, and the console drops it', async () => {
  const op = await operatorPage(browser, gw.base, 'sakura', 'operator-password-1');
  const context = await browser.newContext({ viewport: { width: 375, height: 667 }, isMobile: true, bypassCSP: true });
  const person = await context.newPage();
  await person.goto(`${gw.base}/widget/`);
  await person.click(tid('start-button'));
  await takeOffer(op);
  await op.waitForSelector(tid('conversation-tab'));
  await say(person, '話を聞いてほしいです');
  await op.waitForSelector(`${tid('message')}[data-from="visitor"]:has-text("話を聞いてほしいです")`);

  await flushAll(redis.url);

  // The person, without sending anything.
  const ended = `${tid('ended-screen')}[data-reason="gone"]`;
  await person.waitForSelector(ended, { timeout: 15000 });
  assert.equal((await person.textContent('#ended-title')).trim(), '相談を続けられなくなりました');
  assert.match(await person.textContent('#gone-body'), /新しく相談を始めてください/);
  assert.ok(await person.isVisible('#gone-body'));
  assert.ok(!(await person.isVisible('#notfound-body')));
  const helplines = await person.locator('#screen-ended [data-helplines] li').count();
  assert.ok(helplines > 0, 'other helplines are listed');
  assert.ok(await person.isVisible('#start-again'));
  assert.deepEqual(await violations(person), [], 'the lost-conversation screen is accessible');

  // The console: the conversation is gone from the tabs, with a notice that stays.
  await op.waitForSelector(`${tid('toast')}:has-text("失われました")`, { timeout: 15000 });
  assert.equal(await op.locator(tid('conversation-tab')).count(), 0);

  // The operator's session went with the data: the console asks them to sign in again.
  await op.waitForSelector(tid('login-username'), { timeout: 15000 });

  // Starting again works: a new conversation, waiting in the queue.
  await person.click('#start-again');
  await person.waitForSelector(tid('start-button'));
  await person.click(tid('start-button'));
  await person.waitForSelector(tid('queue-status'), { timeout: 15000 });
});
