// The console takes its text limits from the operator's `welcome.limits`, not from constants of
// its own: a welcome with smaller limits (rewritten on its way in) makes the console count
// against them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, tid, takeOffer } from './harness.js';

let gw; let browser;
before(async () => { gw = await startGateway(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await gw?.stop(); });

test('the console counts text against the limits its welcome carries', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  let rewritten = false;
  await context.routeWebSocket(/\/ws\/operator/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      const frame = JSON.parse(m);
      if (frame.type === 'welcome') {
        assert.deepEqual(frame.limits, { max_text: 4000, max_frame: 16384, max_note: 500 });
        frame.limits = { ...frame.limits, max_text: 10, max_note: 20 };
        rewritten = true;
      }
      ws.send(JSON.stringify(frame));
    });
  });
  const op = await context.newPage();
  await op.goto(`${gw.base}/console/`);
  await op.fill(tid('login-username'), 'sakura');
  await op.fill(tid('login-password'), 'operator-password-1');
  await op.click(tid('login-submit'));
  await op.waitForSelector(`${tid('connection-status')}[data-state="connected"]`);
  assert.ok(rewritten, 'the welcome went through the route');
  assert.equal(await op.$eval('#transfer-note', (e) => e.maxLength), 20);
  assert.equal(await op.$eval('#flag-reason', (e) => e.maxLength), 20);
  await op.selectOption(tid('presence-select'), 'on_duty');

  const personContext = await browser.newContext({ viewport: { width: 375, height: 667 } });
  const person = await personContext.newPage();
  await person.goto(`${gw.base}/widget/`);
  await person.click(tid('start-button'));
  await takeOffer(op);
  await op.waitForSelector(tid('chat-pane'));

  await op.fill(tid('message-input'), 'あいうえおかきくけこ');
  await op.waitForSelector('#input-count:has-text("10 / 10")');
  assert.equal(await op.$eval('#input-count', (e) => e.classList.contains('over')), false);
  await op.fill(tid('message-input'), 'あいうえおかきくけこさ');
  await op.waitForSelector('#input-count.over');
  await personContext.close();
  await context.close();
});
