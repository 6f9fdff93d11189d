// A coordinator switches the service into overloaded mode; a waiting person is told, with the
// other helplines, and it clears again when switched off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, tid } from './harness.js';

let gw; let browser;
before(async () => { gw = await startGateway(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await gw?.stop(); });

test('overloaded mode tells waiting people about other helplines', async () => {
  const coordContext = await browser.newContext();
  const coord = await coordContext.newPage();
  coord.on('dialog', (d) => d.accept());
  await coord.goto(`${gw.base}/coordinator/`);
  await coord.fill(tid('login-username'), 'coord');
  await coord.fill(tid('login-password'), 'coordinator-password');
  await coord.click(tid('login-submit'));
  await coord.waitForSelector(`${tid('overloaded-toggle')}[aria-pressed="false"]`);

  const personContext = await browser.newContext({ viewport: { width: 375, height: 667 } });
  const person = await personContext.newPage();
  await person.goto(`${gw.base}/widget/`);
  await person.click(tid('start-button'));
  await person.waitForSelector(tid('queue-status'), { state: 'visible' });
  assert.equal(await person.isVisible(tid('queue-overloaded')), false);

  await coord.click(tid('overloaded-toggle'));
  await coord.waitForSelector(`${tid('overloaded-toggle')}[aria-pressed="true"]`);
  await person.waitForSelector(tid('queue-overloaded'), { state: 'visible', timeout: 10000 });
  const text = await person.textContent('#queue-helplines');
  assert.match(text, /0120-279-338/, 'other helplines are listed');

  await coord.click(tid('overloaded-toggle'));
  await coord.waitForSelector(`${tid('overloaded-toggle')}[aria-pressed="false"]`);
  await person.waitForSelector(tid('queue-overloaded'), { state: 'hidden', timeout: 10000 });
  await coordContext.close();
  await personContext.close();
});
