// Shared helpers of the browser tests: the browser, users (one browser context each), the
// client's UI actions, and the processes a test starts for itself.
//
// run.sh provides the environment: RC_URL_1 and RC_URL_2 (two demo-server instances sharing
// one Redis and one token secret), RC_REDIS_URL, RC_TOKEN_SECRET, DEMO_SERVER_BIN, and
// REDIS_SERVER_BIN.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Every wait in these tests is bounded by this. */
export const TIMEOUT = 15_000;
export const ARTIFACTS = path.join(here, 'artifacts');

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through tests/e2e/browser/run.sh`);
  return value;
}

/**
 * Debian's chromium, headless, with a fresh temporary profile (user-data-dir) that is removed
 * on close. Never a downloaded browser.
 */
export function tempDir(prefix) {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export async function launchBrowser() {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'roomcast-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
    viewport: { width: 1280, height: 800 },
  });
  const browser = context.browser();
  return {
    browser,
    /** A new isolated user (its own cookies and localStorage). */
    async newUser(baseURL, options = {}) {
      const ctx = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 }, ...options });
      ctx.setDefaultTimeout(TIMEOUT);
      ctx.setDefaultNavigationTimeout(TIMEOUT);
      const page = await ctx.newPage();
      return watch(page, ctx);
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Records dialogs (dismissed at once), page errors and console errors of a page. */
function watch(page, context) {
  const user = { page, context, dialogs: [], pageErrors: [], consoleErrors: [] };
  page.on('dialog', (dialog) => {
    user.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (err) => user.pageErrors.push(String(err)));
  page.on('console', (msg) => {
    if (msg.type() === 'error') user.consoleErrors.push(msg.text());
  });
  return user;
}

export async function screenshot(page, name, options = {}) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, ...options });
  console.log(`screenshot: ${path.relative(path.resolve(here, '../../..'), file)}`);
  return file;
}

// ------------------------------------------------------------------ the client's UI

export const tid = (id) => `[data-testid="${id}"]`;
/** The message list of the conversation on screen. */
export const activeList = (page) => page.locator(`${tid('message-list')}:not([hidden])`);

export async function waitConnected(page) {
  await page.locator(`${tid('conn-status')}[data-state="online"]`).waitFor({ state: 'attached' });
}

/**
 * Creates a room from the lobby, as `name` (a new guest), public unless `visibility` says
 * 'private'. Returns the shareable link (a private room's, once it carries its invite).
 */
export async function createRoom(page, name, roomName, { visibility = 'public' } = {}) {
  await page.goto('/');
  await page.locator(tid('name-input')).fill(name);
  await page.locator(tid('create-room-name')).fill(roomName);
  if (visibility !== 'public') await page.locator(tid('create-visibility')).selectOption(visibility);
  await page.locator(tid('create-room')).click();
  await page.locator(tid('conv-title'), { hasText: roomName }).waitFor();
  await waitConnected(page);
  if (visibility === 'private') {
    await page.locator(`${tid('share-link')}[data-visibility="private"]`).waitFor({ state: 'attached' });
    await waitFor(async () => (await page.locator(tid('share-link')).inputValue()).includes('invite='), 'the invite in the share link');
  }
  return page.locator(tid('share-link')).inputValue();
}

/**
 * Opens a shareable link on `baseURL` (keeping its path and query: a private room's invite
 * too) and joins as `name`, a new guest; `roomName` is then the title on screen.
 */
export async function joinByLink(page, link, name, roomName) {
  const url = new URL(link);
  await page.goto(url.pathname + url.search);
  await page.locator(tid('invite')).waitFor();
  await page.locator(tid('name-input')).fill(name);
  await page.locator(tid('join-invite')).click();
  await page.locator(tid('chat')).waitFor();
  if (roomName) await page.locator(tid('conv-title'), { hasText: roomName }).waitFor();
  await waitConnected(page);
}

/** The link `link` on another instance (same path and query). */
export function onInstance(link, base) {
  const url = new URL(link);
  return new URL(url.pathname + url.search, base).toString();
}

/** The identity the page keeps (localStorage): `{kind, token, expiresAt, user}`. */
export function storedIdentity(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem('roomcast.identity')));
}

/** Types a message in the composer and sends it with Enter. */
export async function send(page, text) {
  const input = page.locator(tid('message-input'));
  await input.fill(text);
  await input.press('Enter');
}

/** Waits until the conversation on screen shows a message whose body is exactly `text`. */
export async function waitMessage(page, text, { testid = 'message', status } = {}) {
  const item = activeList(page)
    .locator(tid(testid))
    .filter({ has: page.locator(tid('message-body')).getByText(text, { exact: true }) });
  await item.first().waitFor();
  if (status) await activeList(page).locator(`${tid(testid)}[data-status="${status}"]`).filter({ hasText: text }).first().waitFor();
  return item;
}

export async function waitSystem(page, text) {
  await activeList(page).locator(tid('system-message'), { hasText: text }).last().waitFor();
}

export function member(page, name) {
  return page.locator(`${tid('member-list')} ${tid('member')}[data-name="${name}"]`);
}

export async function bodyText(page) {
  return page.evaluate(() => document.body.innerText);
}

// ------------------------------------------------------------------ the REST API, from the test

/**
 * One REST call to `base` (with `token` as Bearer): `{status, body, headers}`. A 429 is
 * waited out (its Retry-After, bounded) and retried.
 */
export async function rest(base, method, path, { token, body } = {}) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const res = await fetch(new URL(path, base), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    const wait = Number(res.headers.get('retry-after')) * 1000;
    if (res.status === 429 && wait > 0 && Date.now() + wait < deadline) {
      await new Promise((r) => setTimeout(r, wait));
      continue;
    }
    return { status: res.status, body: data, headers: res.headers };
  }
}

/** A guest identity made over REST: `{user, token, expiresAt}`. */
export async function guest(base, name) {
  const res = await rest(base, 'POST', '/guests', { body: { name } });
  if (res.status !== 201) throw new Error(`POST /guests answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

// ------------------------------------------------------------------ processes

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor(check, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (${last.message})` : ''}`);
}

/**
 * A child process the test owns; `stop()` ends it (TERM, then KILL) and waits. Its pid is also
 * noted in $RC_PID_DIR, so that run.sh can end it should this test process die first.
 */
function own(child, name) {
  let exited = false;
  const output = [];
  const pidFile = process.env.RC_PID_DIR && child.pid ? path.join(process.env.RC_PID_DIR, String(child.pid)) : null;
  if (pidFile) writeFileSync(pidFile, `${name}\n`);
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = true;
    if (pidFile) rmSync(pidFile, { force: true });
    resolve({ code, signal });
  }));
  child.stdout?.on('data', (d) => output.push(String(d)));
  child.stderr?.on('data', (d) => output.push(String(d)));
  return {
    child,
    name,
    output,
    get exited() { return exited; },
    exit,
    async stop(signal = 'SIGTERM') {
      if (exited) return exit;
      child.kill(signal);
      const timer = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 5000);
      const result = await exit;
      clearTimeout(timer);
      return result;
    },
  };
}

const running = new Set();
process.on('exit', () => {
  for (const p of running) if (!p.exited) p.child.kill('SIGKILL');
});

/**
 * Starts a redis-server on 127.0.0.1:port that saves nothing on its own. Its files go to `dir`
 * (kept, so that a restart can load a manual SAVE) or to a temporary folder removed on stop.
 */
export async function startRedis(port, { dir: keep } = {}) {
  const bin = process.env.REDIS_SERVER_BIN || 'redis-server';
  const dir = keep || mkdtempSync(path.join(os.tmpdir(), 'roomcast-redis-'));
  const proc = own(spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] }), `redis:${port}`);
  running.add(proc);
  await waitFor(() => proc.output.join('').includes('Ready to accept connections') || (proc.exited && Promise.reject(new Error(proc.output.join('')))), `redis-server on ${port}`);
  const stop = proc.stop;
  proc.stop = async (signal) => {
    const r = await stop(signal);
    running.delete(proc);
    if (!keep) rmSync(dir, { recursive: true, force: true });
    return r;
  };
  return proc;
}

/** Starts a demo-server on 127.0.0.1:port and waits until it answers. */
export async function startServer({ port, redisUrl, secret }) {
  const bin = env('DEMO_SERVER_BIN');
  const args = ['--listen', `127.0.0.1:${port}`];
  if (redisUrl) args.push('--redis-url', redisUrl);
  if (secret) args.push('--token-secret', secret);
  if (process.env.RC_STATIC_DIR) args.push('--static-dir', process.env.RC_STATIC_DIR);
  const proc = own(spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' } }), `demo-server:${port}`);
  running.add(proc);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (proc.exited) throw new Error(`demo-server exited: ${proc.output.join('').slice(-2000)}`);
    const res = await fetch(`${url}/openapi.json`); // v2: the one anonymous kind of call
    return res.ok;
  }, `demo-server on ${port}`);
  const stop = proc.stop;
  proc.stop = async (signal) => {
    const r = await stop(signal);
    running.delete(proc);
    return r;
  };
  proc.url = url;
  return proc;
}

/** Runs a redis-cli command against a local Redis. */
export function redisCli(port, ...args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.env.REDIS_CLI_BIN || 'redis-cli', ['-p', String(port), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.trim());
      else reject(new Error(`redis-cli ${args.join(' ')} exited ${code}: ${out}`));
    });
  });
}

export { waitFor };
