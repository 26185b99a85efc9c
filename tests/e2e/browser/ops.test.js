// Issue 16's browser side: the page has a favicon (no 404, no console error while loading),
// and a reload does not flood the room with "left"/"joined" lines (a leave followed by the
// same user's join within a few seconds shows as nothing).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  activeList, createRoom, env, joinByLink, launchBrowser, member, onInstance, send, tid,
  waitConnected, waitMessage, waitSystem,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

/** The client's grace for a leave (frontendws/live.js LEAVE_GRACE_MS), and a margin. */
const LEAVE_GRACE_MS = 3000;

test('the page loads with its favicon and without any 404 or console error', async () => {
  const user = await harness.newUser(env('RC_URL_1'));
  const failed = [];
  user.page.on('response', (res) => { if (res.status() >= 400) failed.push(`${res.status()} ${res.url()}`); });
  await user.page.goto('/');
  await user.page.locator(tid('name-input')).waitFor();
  const href = await user.page.locator('link[rel="icon"]').getAttribute('href');
  const icon = await user.page.request.get(new URL(href, env('RC_URL_1')).toString());
  assert.equal(icon.status(), 200, `the favicon ${href}`);
  assert.match(icon.headers()['content-type'], /image\/svg\+xml/);
  // Chromium asks for the icon after the load: give it the time to, then check.
  await user.page.waitForLoadState('networkidle');
  assert.deepEqual(failed, []);
  assert.deepEqual(user.consoleErrors, []);
  assert.deepEqual(user.pageErrors, []);
});

test('a reload shows no left/joined lines to the others; a real leave still shows', async () => {
  const alice = await harness.newUser(env('RC_URL_1'));
  const bob = await harness.newUser(env('RC_URL_2'));
  const link = await createRoom(alice.page, 'alice', 'Reloads');
  await joinByLink(bob.page, onInstance(link, env('RC_URL_2')), 'bob', 'Reloads');
  await waitSystem(alice.page, 'bob joined');
  await member(alice.page, 'bob').waitFor();

  // Bob reloads twice (his only tab: each reload is a leave and a join on the server).
  for (let i = 0; i < 2; i += 1) {
    await bob.page.reload();
    await waitConnected(bob.page);
    await bob.page.locator(tid('conv-title'), { hasText: 'Reloads' }).waitFor();
    await member(alice.page, 'bob').waitFor();
  }
  // Past the grace of the last leave, a message from bob marks "everything so far".
  await bob.page.waitForTimeout(LEAVE_GRACE_MS + 500);
  await send(bob.page, 'back after reloading');
  await waitMessage(alice.page, 'back after reloading');
  const lines = activeList(alice.page).locator(tid('system-message'));
  const texts = await lines.allInnerTexts();
  assert.deepEqual(texts.filter((t) => t.includes('bob')), ['bob joined'], `system lines: ${texts}`);

  // A real leave (bob closes his page) still shows, after the grace.
  await bob.page.close();
  await waitSystem(alice.page, 'bob left');
});
