// Accessibility: axe-core checks the widget, the console and the coordinator view in a real
// browser; serious and critical violations fail the test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { startGateway, launchBrowser, operatorPage, tid } from './harness.js';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

let gw; let browser;
before(async () => { gw = await startGateway(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await gw?.stop(); });

async function violations(page) {
  // Injected through the DevTools protocol, so the page's CSP does not apply to it.
  await page.addScriptTag({ content: AXE }).catch(async () => page.evaluate(AXE));
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

test('the widget first screen and chat have no serious accessibility violations', async () => {
  const context = await browser.newContext({ viewport: { width: 375, height: 667 }, bypassCSP: true });
  const page = await context.newPage();
  await page.goto(`${gw.base}/widget/`);
  await page.waitForSelector(tid('start-button'));
  assert.deepEqual(await violations(page), []);
  await page.click(tid('start-button'));
  await page.waitForSelector(tid('queue-status'), { state: 'visible' });
  assert.deepEqual(await violations(page), []);
  await context.close();
});

test('the operator console has no serious accessibility violations', async () => {
  const page = await operatorPage(browser, gw.base, 'sakura', 'operator-password-1');
  assert.deepEqual(await violations(page), []);
  await page.context().close();
});
