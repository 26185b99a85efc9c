// Without guest mode (`POST /guests` answers 404: the host signs users in), the lobby asks for
// an access token instead of a name, keeps it like a guest's, and the chat works with it.
// The demo has guest mode on, so the browser is shown a 404 for /guests; the token pasted is a
// real one, issued by the server.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  env, guest, launchBrowser, screenshot, storedIdentity, tid, waitConnected,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

test('no guest mode: the lobby asks for a token, and the chat works with the pasted one', async () => {
  const base = env('RC_URL_1');
  const user = await harness.newUser(base);
  await user.page.route('**/guests', (route) => route.fulfill({
    status: 404,
    contentType: 'application/problem+json',
    body: JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, detail: 'no guest mode here', code: 'not_found' }),
  }));
  await user.page.goto('/');
  await user.page.locator(tid('name-input')).fill('tess');
  await user.page.locator(tid('create-room-name')).fill('Token room');
  await user.page.locator(tid('create-room')).click();
  await user.page.locator(tid('error-banner'), { hasText: 'does not offer guest access' }).waitFor();
  await user.page.locator(tid('token-form')).waitFor();
  assert.ok(await user.page.locator(tid('name-input')).isHidden(), 'no name field: the token says who you are');

  // A refused token is said to be refused, and not kept.
  await user.page.locator(tid('token-input')).fill('not-a-token');
  await user.page.locator(tid('use-token')).click();
  await user.page.locator(tid('error-banner'), { hasText: 'refused this token' }).waitFor();
  assert.equal(await storedIdentity(user.page), null);

  const issued = await guest(base, 'tess');
  await user.page.locator(tid('token-input')).fill(issued.token);
  await user.page.locator(tid('use-token')).click();
  await user.page.locator(`${tid('token-status')}:not([hidden])`).waitFor();
  assert.equal((await storedIdentity(user.page)).token, issued.token, 'kept like a guest identity');
  await screenshot(user.page, 'token-lobby');

  await user.page.locator(tid('create-room')).click();
  await user.page.locator(tid('conv-title'), { hasText: 'Token room' }).waitFor();
  await waitConnected(user.page);
  assert.equal(await user.page.locator(tid('me')).innerText(), 'tess');
  assert.deepEqual(await user.page.evaluate(() => window.roomcast.user), issued.user);
  assert.deepEqual(user.pageErrors, []);
});
