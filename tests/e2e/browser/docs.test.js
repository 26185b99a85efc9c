// The API docs (Swagger UI over /openapi.json) render the endpoints, from the server alone.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { env, launchBrowser, screenshot } from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

test('the docs page /docs/ renders the endpoints', async () => {
  const base = env('RC_URL_1');
  const user = await harness.newUser(base);
  const foreign = [];
  user.page.on('request', (req) => {
    const url = new URL(req.url());
    if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol)) return;
    if (url.origin !== new URL(base).origin) foreign.push(req.url());
  });
  await user.page.goto('/docs/');
  // Swagger UI puts zero-width spaces in paths for wrapping: compare without them.
  const paths = user.page.locator('.opblock-summary-path');
  await paths.first().waitFor();
  await user.page.locator('.opblock-summary-path', { hasText: /create-room/ }).first().waitFor();
  const shown = (await paths.allInnerTexts()).map((t) => t.replace(/[\u200b\s]/g, ''));
  const v1 = ['/create-room', '/join-room/{roomId}', '/rooms', '/rooms/{roomId}', '/rooms/{roomId}/messages'];
  const v2 = ['/guests', '/rooms/{roomId}/invites', '/rooms/{roomId}/members/me', '/rooms/{roomId}/members'];
  for (const p of [...v1, ...v2]) {
    assert.ok(shown.includes(p), `${p} is listed (saw ${shown.join(', ')})`);
  }
  // The WebSocket is the AsyncAPI document's (issue 18): not a REST operation.
  assert.ok(!shown.includes('/ws'), '/ws is not listed as a REST operation');
  assert.ok(await user.page.getByText('/create-room').first().isVisible(), '"/create-room" is visible');
  assert.deepEqual(foreign, [], 'nothing is fetched from another origin');
  // The demo's Content-Security-Policy (issue 15) lets Swagger UI run: no violation.
  const response = await user.page.request.get('/docs/');
  assert.match(response.headers()['content-security-policy'] ?? '', /default-src 'self'/);
  const blocked = user.consoleErrors.filter((e) => /Content Security Policy/i.test(e));
  assert.deepEqual(blocked, [], 'nothing is blocked by the CSP');
  await screenshot(user.page, 'docs', { fullPage: false });
});
