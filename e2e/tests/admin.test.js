// Issue 20, item 3: the admin screen in Chromium. The admin signs in with a second factor
// (enrolled at the first sign-in, codes computed here with node's crypto), acknowledges the
// pledge, adds an operator (reading the one-time password shown once); the operator signs in,
// chooses a password and acknowledges the pledge; the admin resets the password and then
// disables the account, and each time the operator's open console is signed out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startGateway, launchBrowser, tid } from './harness.js';

let gw; let browser;
before(async () => {
  // The secure defaults: a second factor for coordinators and admins, the pledge for everyone.
  // Every browser here signs in from 127.0.0.1, each sign-in's steps counted as attempts of
  // that one address: more than the default burst of 10 in these tests.
  gw = await startGateway({
    TSUNAGU_AUTH__REQUIRE_TOTP_FOR: 'coordinator,admin',
    TSUNAGU_AUTH__REQUIRE_PLEDGE: 'true',
    TSUNAGU_LIMITS__LOGIN_BURST: '40',
  });
  browser = await launchBrowser();
});
after(async () => { await browser?.close(); await gw?.stop(); });

/** RFC 6238 (SHA-1, 6 digits, 30 s) from a base32 secret. */
function totp(secret, now = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0; let value = 0; const key = [];
  for (const c of secret.replace(/=+$/, '')) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) { bits -= 8; key.push((value >>> bits) & 255); value &= (1 << bits) - 1; }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 30000)));
  const h = createHmac('sha1', Buffer.from(key)).update(counter).digest();
  const off = h[19] & 15;
  return String((h.readUInt32BE(off) & 0x7fffffff) % 1000000).padStart(6, '0');
}

async function signIn(page, username, password) {
  await page.fill(tid('login-username'), username);
  await page.fill(tid('login-password'), password);
  await page.click(tid('login-submit'));
}

/** Does the step shown, if it is `step`. */
async function expectStep(page, step) {
  await page.waitForSelector(`${tid('login-step')}[data-step="${step}"]`);
}

async function acknowledgePledge(page) {
  await expectStep(page, 'pledge');
  assert.match(await page.textContent(tid('pledge-text')), /誰にも話しません/);
  await page.check(tid('pledge-accept'));
  await page.click(tid('step-submit'));
}

async function chooseOwnPassword(page, password) {
  await expectStep(page, 'change_password');
  await page.fill(tid('step-new-password'), password);
  await page.fill(tid('step-new-password2'), password);
  await page.click(tid('step-submit'));
}

async function readOneTimePassword(admin) {
  const node = await admin.waitForSelector(tid('one-time-password'), { state: 'visible' });
  const otp = (await node.textContent()).trim();
  await admin.click(tid('one-time-password-hide'));
  return otp;
}

test('an admin with a second factor adds, resets and disables an operator whose console is signed out', async () => {
  const admin = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  admin.on('dialog', (d) => d.accept());
  await admin.goto(`${gw.base}/admin`);
  await signIn(admin, 'admin', 'admin-password-1');
  // First sign-in of an admin: enrol an authenticator, with a code computed here.
  await expectStep(admin, 'totp_enrol');
  const secret = (await admin.textContent(tid('step-secret'))).trim();
  assert.match(await admin.textContent(tid('step-uri')), /^otpauth:\/\/totp\//);
  await admin.fill(tid('step-code'), totp(secret));
  await admin.click(tid('step-submit'));
  await admin.waitForSelector(tid('recovery-codes'));
  assert.equal(await admin.locator(`${tid('recovery-codes')} li`).count(), 10);
  await admin.click(tid('recovery-continue'));
  await acknowledgePledge(admin);
  await admin.waitForSelector(`${tid('account-row')}[data-username="admin"]`);

  // Add an operator: the one-time password is shown once.
  await admin.fill(tid('acc-add-username'), 'yuki');
  await admin.fill(tid('acc-add-name'), 'Yuki');
  await admin.selectOption(tid('acc-add-role'), 'operator');
  await admin.click(tid('acc-add-submit'));
  const otp = await readOneTimePassword(admin);
  assert.match(otp, /^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$/);
  const row = `${tid('account-row')}[data-username="yuki"]`;
  await admin.waitForSelector(row);

  // The operator signs in, chooses a password and acknowledges the pledge.
  const op = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  await op.goto(`${gw.base}/console/`);
  await signIn(op, 'yuki', otp);
  await chooseOwnPassword(op, 'yuki own password 1');
  await acknowledgePledge(op);
  await op.waitForSelector(`${tid('connection-status')}[data-state="connected"]`);

  // A reset password signs the open console out; the new one-time password works once.
  await admin.reload();
  await admin.waitForSelector(row);
  await admin.click(`${row} ${tid('acc-reset-password')}`);
  const otp2 = await readOneTimePassword(admin);
  assert.notEqual(otp2, otp);
  await op.waitForSelector(tid('login-username'), { state: 'visible' });
  await signIn(op, 'yuki', otp2);
  await chooseOwnPassword(op, 'yuki own password 2');
  await op.waitForSelector(`${tid('connection-status')}[data-state="connected"]`);

  // Disabled: the open console is signed out, and the password no longer works.
  await admin.click(`${row} ${tid('acc-disable')}`);
  await admin.waitForSelector(`${row}[data-disabled="true"]`);
  await op.waitForSelector(tid('login-username'), { state: 'visible' });
  await signIn(op, 'yuki', 'yuki own password 2');
  await op.waitForSelector(`${tid('login-error')}:not([hidden])`);

  // Every change is in the audit trail.
  const actions = await admin.$$eval(tid('account-audit-row'), (rows) => rows.map((r) => r.dataset.action));
  for (const a of ['account_added', 'password_changed', 'pledge_acknowledged', 'password_reset', 'account_disabled', 'totp_enrolled']) {
    assert.ok(actions.includes(a), `${a} in ${actions}`);
  }
});

test('a coordinator with a second factor signs in to the coordinator view with a code', async () => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${gw.base}/coordinator/`);
  await signIn(page, 'coord', 'coordinator-password');
  await expectStep(page, 'totp_enrol');
  const secret = (await page.textContent(tid('step-secret'))).trim();
  await page.fill(tid('step-code'), totp(secret));
  await page.click(tid('step-submit'));
  await page.click(tid('recovery-continue'));
  await acknowledgePledge(page);
  await page.waitForSelector(`${tid('connection-status')}[data-state="connected"]`);
});
