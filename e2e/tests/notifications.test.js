// Browser notifications in the coordinator view (issue 21, item 3): the coordinator turns them
// on (the browser's permission asked on their click), and then a help request and an alert
// condition the server raised each show a system notification, with what happened and when but
// nothing of the conversation; the in-page alert shows as before. Notifications are recorded by
// wrapping the page's real `Notification` constructor (the browser still makes them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, operatorPage, tid, takeOffer, say } from './harness.js';

let gw; let browser;
const CANARY = 'しずかなカナリア5521';

before(async () => {
  // Conditions are evaluated every 200 ms; two on duty is the threshold (one is few_on_duty).
  gw = await startGateway({ TSUNAGU_ALERTS__CHECK_MS: '200', TSUNAGU_ALERTS__MIN_ON_DUTY: '2' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

/** Every notification the page makes, as `window.__notes`. */
function recordNotifications() {
  window.__notes = [];
  const Real = window.Notification;
  if (!Real) return;
  window.__asked = 0;
  window.Notification = class extends Real {
    constructor(title, options = {}) {
      super(title, options);
      window.__notes.push({ title, body: options.body, tag: options.tag, urgent: options.requireInteraction });
    }

    static requestPermission(...args) {
      window.__asked += 1;
      return Real.requestPermission(...args);
    }
  };
}

const notes = (page) => page.evaluate(() => window.__notes);

async function waitForNote(page, pattern) {
  await page.waitForFunction((src) => (window.__notes || []).some((n) => new RegExp(src).test(n.title)),
    pattern.source, { timeout: 10000 });
  return (await notes(page)).find((n) => pattern.test(n.title));
}

test('a coordinator turns notifications on and is notified of a help request and thin staffing, without content', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addInitScript(recordNotifications);
  const coord = await context.newPage();
  await coord.goto(`${gw.base}/coordinator/`);
  await coord.fill(tid('login-username'), 'coord');
  await coord.fill(tid('login-password'), 'coordinator-password');
  await coord.click(tid('login-submit'));
  await coord.waitForSelector(`${tid('connection-status')}[data-state="connected"]`);

  // Not yet allowed: the button offers to turn them on, and nothing is shown.
  const toggle = coord.locator(tid('notify-toggle'));
  await toggle.waitFor({ state: 'visible' });
  assert.equal(await coord.evaluate(() => Notification.permission), 'default');
  assert.equal(await toggle.getAttribute('data-state'), 'off');
  assert.equal(await toggle.textContent(), 'デスクトップ通知をオンにする');
  // The coordinator clicks and the browser asks; headless, the prompt is dismissed: still off.
  await toggle.click();
  await coord.waitForFunction(() => window.__asked === 1);
  assert.equal(await coord.evaluate(() => Notification.permission), 'default');
  assert.equal(await toggle.getAttribute('data-state'), 'off');
  // Asked again, they allow (the test's grant stands for the prompt's answer).
  await context.grantPermissions(['notifications'], { origin: gw.base });
  await toggle.click();
  await coord.waitForSelector(`${tid('notify-toggle')}[data-state="on"]`);
  assert.equal(await toggle.getAttribute('aria-pressed'), 'true');

  // One operator goes on duty: fewer than two is a condition the server raises.
  const op = await operatorPage(browser, gw.base, 'sakura', 'operator-password-1');
  const few = await waitForNote(coord, /当番の相談員が少なくなっています/);
  assert.match(few.title, /1 人、目安 2 人/);
  assert.equal(few.urgent, false, 'a warning does not stay until dismissed');

  // A person talks with the operator, who asks for help.
  const person = await (await browser.newContext()).newPage();
  await person.goto(`${gw.base}/widget/`);
  await person.click(tid('start-button'));
  await takeOffer(op);
  await say(person, `眠れません ${CANARY}`);
  await op.waitForSelector(`text=${CANARY}`);
  await op.click(tid('help-button'));
  const help = await waitForNote(coord, /相談員が助けを求めています/);
  assert.match(help.body, /Sakura/, 'who asked');
  assert.ok(help.tag, 'tagged, so several open tabs show one');
  await coord.waitForSelector(`${tid('alert')}[data-kind="help"]`);

  const all = JSON.stringify(await notes(coord));
  assert.ok(!all.includes(CANARY), 'no conversation content in any notification');
  const count = (await notes(coord)).length;

  // Turned off: the next condition (the operator steps away: nobody on duty) shows in the page only.
  await toggle.click();
  await coord.waitForSelector(`${tid('notify-toggle')}[data-state="off"]`);
  await op.selectOption(tid('presence-select'), 'away');
  await coord.waitForSelector(`${tid('alert-thin')}:has-text("受付中の相談員がいません")`);
  await coord.waitForTimeout(500);
  assert.equal((await notes(coord)).length, count, 'nothing more notified once turned off');
});
