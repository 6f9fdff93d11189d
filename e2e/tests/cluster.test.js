// Two gateway nodes sharing one real redis-server: a person whose widget talks to node A and an
// operator whose console talks to node B hold a conversation in headless Chromium; node A is
// killed with SIGKILL mid-conversation and the person's widget resumes through node B (the
// proxy standing in for a load balancer), with nothing lost or doubled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, startProxy, startRedis, launchBrowser, operatorPage, tid, takeOffer, say } from './harness.js';

let redis; let nodeA; let nodeB; let balancer; let browser;

before(async () => {
  redis = await startRedis();
  // The balancer is the origin people's pages come from: both nodes allow it, as a deployment
  // behind a load balancer sets `server.public_url` (the nodes check Origin against their own
  // configured origins, never against Host).
  balancer = await startProxy('http://127.0.0.1:9');
  const shared = {
    TSUNAGU_STORE__URL: redis.url,
    TSUNAGU_STORE__KEY_PREFIX: 'e2e',
    TSUNAGU_SERVER__ALLOWED_ORIGINS: balancer.base,
  };
  nodeA = await startGateway(shared);
  nodeB = await startGateway({ ...shared, TSUNAGU_DATABASE__SQLITE_PATH: nodeA.database }, { addUsers: false });
  balancer.retarget(nodeA.base);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await balancer?.close();
  await nodeA?.stop();
  await nodeB?.stop();
  await redis?.stop();
});

const messageWith = (text) => `${tid('message')}:has-text("${text}")`;

test('a person on one node and an operator on another talk, and the person survives the loss of their node', async () => {
  // The operator signs in on node B; the person reaches the service through the balancer (A).
  const op = await operatorPage(browser, nodeB.base, 'sakura', 'operator-password-1');
  const context = await browser.newContext({ viewport: { width: 375, height: 667 }, isMobile: true });
  const person = await context.newPage();
  await person.goto(`${balancer.base}/widget/`);
  await person.click(tid('start-button'));
  await person.waitForSelector(tid('queue-status'));

  // The offer made for a person waiting on node A reaches the console on node B.
  await takeOffer(op);
  await op.waitForSelector(tid('chat-pane'));

  await say(person, 'ノードAから書いています');
  await op.waitForSelector(`${tid('message')}[data-from="visitor"]:has-text("ノードAから")`);
  await say(op, 'ノードBで受け取りました');
  await person.waitForSelector(messageWith('ノードBで受け取りました'));

  // Node A dies; the balancer sends new connections to node B.
  await nodeA.kill();
  balancer.retarget(nodeB.base);
  await say(op, 'まだここにいます');
  await person.waitForSelector(`${tid('connection-status')}[data-state="connected"]`, { timeout: 20000 });
  await person.waitForSelector(messageWith('まだここにいます'), { timeout: 20000 });
  await say(person, 'つながりました');
  await op.waitForSelector(`${tid('message')}[data-from="visitor"]:has-text("つながりました")`);
  await person.waitForSelector(`${tid('message')}[data-from="visitor"]:has-text("つながりました")[data-state="sent"]`);

  for (const [page, text] of [[person, 'ノードBで受け取りました'], [person, 'まだここにいます'],
    [op, 'ノードAから書いています'], [op, 'つながりました']]) {
    assert.equal(await page.locator(messageWith(text)).count(), 1, `"${text}" shown once`);
  }
});
