// Test harness: start the real gateway binary on a free port with a fresh accounts file, a TCP
// proxy in front of it that can cut every connection (a network drop), and headless Chromium.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const BIN = process.env.GATEWAY_BIN || new URL('../../target/debug/gateway', import.meta.url).pathname;

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];

/**
 * Starts the gateway binary with `env`; with `addUsers` (the default) it first creates the test
 * accounts in a fresh accounts database (a SQLite file). A second node of a cluster passes
 * `addUsers: false` and the first node's `TSUNAGU_DATABASE__SQLITE_PATH`.
 */
export async function startGateway(env = {}, { addUsers = true } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tsunagu-e2e-'));
  const baseEnv = {
    ...process.env,
    TSUNAGU_DATABASE__SQLITE_PATH: join(dir, 'tsunagu.db'),
    TSUNAGU_SERVER__PORT: '0',
    TSUNAGU_LOG__FILTER: 'info',
    // Sign-ins with a password alone, for tests not about second factors or the pledge
    // (admin.test.js puts the secure defaults back).
    TSUNAGU_AUTH__REQUIRE_TOTP_FOR: '',
    TSUNAGU_AUTH__REQUIRE_PLEDGE: 'false',
    ...env,
  };
  const users = [
    ['sakura', 'Sakura', 'operator', 'operator-password-1'],
    ['coord', 'Coordinator', 'coordinator', 'coordinator-password'],
    ['admin', 'Admin', 'admin', 'admin-password-1'],
  ];
  for (const [username, name, role, password] of addUsers ? users : []) {
    const r = spawnSync(BIN, ['user', 'add', '--username', username, '--display-name', name,
      '--role', role, '--password-stdin', '--languages', 'ja,en'],
    { env: baseEnv, input: password + '\n', encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`user add failed: ${r.stderr}`);
  }
  const child = spawn(BIN, [], { env: baseEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${output}`)), 20000);
    child.stdout.on('data', (d) => {
      output += d;
      const m = output.match(/Landing page\s+(http:\/\/127\.0\.0\.1:\d+)\//);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.stderr.on('data', (d) => { output += d; });
    child.on('exit', (code) => reject(new Error(`gateway exited ${code}:\n${output}`)));
  });
  return {
    base,
    database: baseEnv.TSUNAGU_DATABASE__SQLITE_PATH,
    logs: () => output,
    /** SIGKILL: the node dies mid-conversation, as a crashed machine would. */
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A redis-server of the test's own on a free port, without persistence. */
export async function startRedis() {
  const port = await new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}/`,
    async stop() { child.kill('SIGKILL'); await new Promise((r) => child.once('exit', r)); },
  };
}

/**
 * A TCP proxy to `target` (host:port) whose connections can be cut and refused at will, and
 * pointed at another target (as a load balancer moves traffic off a dead node).
 */
export async function startProxy(targetUrl) {
  let target = new URL(targetUrl);
  const sockets = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) { client.destroy(); return; }
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    /** Drops every connection and refuses new ones until `restore()`. */
    cut() { refusing = true; for (const s of sockets) s.destroy(); },
    restore() { refusing = false; },
    /** New connections go to `url` from now on. */
    retarget(url) { target = new URL(url); },
    async close() { for (const s of sockets) s.destroy(); await new Promise((r) => server.close(r)); },
  };
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
}

export const tid = (id) => `[data-testid="${id}"]`;

/** Signs an operator in on the console and puts them on duty (if asked). */
export async function operatorPage(browser, base, username, password, onDuty = true) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${base}/console/`);
  await page.fill(tid('login-username'), username);
  await page.fill(tid('login-password'), password);
  await page.click(tid('login-submit'));
  await page.waitForSelector(`${tid('connection-status')}[data-state="connected"]`);
  if (onDuty) await page.selectOption(tid('presence-select'), 'on_duty');
  return page;
}

/** The operator takes the person offered on the console, once the offer shows. */
export async function takeOffer(op) {
  await op.waitForSelector(tid('offer'));
  await op.click(`${tid('offer')} ${tid('offer-accept')}`);
}

/** Types `text` into the page's composer (the widget's or the console's) and sends it. */
export async function say(page, text) {
  await page.fill(tid('message-input'), text);
  await page.click(tid('send-button'));
}
