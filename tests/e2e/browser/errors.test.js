// Errors are shown plainly: REST problem details, and WebSocket error frames on the message
// they answer.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  activeList, createRoom, env, joinByLink, launchBrowser, member, screenshot, send, tid,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

test('joining an unknown room shows the problem detail; the lobby asks for a name first', async () => {
  const user = await harness.newUser(env('RC_URL_1'));
  await user.page.goto('/');
  // No name yet: the lobby says so and focuses the field.
  await user.page.locator(tid('join-room-id')).fill('no-such-room');
  await user.page.locator(tid('join-room')).click();
  await user.page.locator(tid('error-banner'), { hasText: 'Pick a display name' }).waitFor();
  assert.equal(await user.page.evaluate(() => document.activeElement?.dataset.testid), 'name-input');

  await user.page.locator(tid('name-input')).fill('dora');
  await user.page.locator(tid('join-room')).click();
  // The server's RFC 9457 `detail` ("room no-such-room not found") is shown.
  await user.page.locator(tid('error-banner'), { hasText: 'room no-such-room not found' }).waitFor();
  assert.ok(await user.page.locator(tid('lobby')).isVisible(), 'still in the lobby');

  // A link to a room that does not exist says so as well.
  await user.page.goto('/?room=00000000-0000-0000-0000-000000000000');
  await user.page.locator(tid('error-banner'), { hasText: 'does not exist' }).waitFor();
  await screenshot(user.page, 'errors-unknown-room');
});

test('a private message to someone who went offline is marked failed with recipient_offline', async () => {
  const alice = await harness.newUser(env('RC_URL_1'));
  const bob = await harness.newUser(env('RC_URL_2'));
  const link = await createRoom(alice.page, 'alice', 'Errors');
  await joinByLink(bob.page, link, 'bob');
  await member(alice.page, 'bob').click();
  await alice.page.locator(tid('private-tag')).waitFor();
  await bob.page.close();
  await member(alice.page, 'bob').waitFor({ state: 'detached' });

  await send(alice.page, 'are you there?');
  const item = alice.page.locator(`${tid('dm-message')}[data-status="failed"]`, { hasText: 'are you there?' });
  await item.waitFor();
  assert.match(await item.locator(tid('message-error')).innerText(), /recipient_offline/);
  await alice.page.locator(tid('error-banner'), { hasText: 'recipient_offline' }).waitFor();
  await screenshot(alice.page, 'errors-recipient-offline');

  // An over-long body is refused before it is sent.
  await alice.page.locator(tid('conv-room')).click();
  await alice.page.locator(tid('message-input')).evaluate((el) => { el.removeAttribute('maxlength'); });
  await alice.page.locator(tid('message-input')).fill('x'.repeat(4001));
  await alice.page.locator(tid('char-count'), { hasText: '4001 / 4000' }).waitFor();
  await alice.page.locator(tid('message-input')).press('Enter');
  await alice.page.locator(tid('error-banner'), { hasText: 'at most 4000 characters' }).waitFor();
  // The composer handled Enter synchronously: had it sent, the message would be listed now.
  assert.equal(await activeList(alice.page).locator(tid('message'), { hasText: 'xxxxxxxxxx' }).count(), 0);
  assert.equal((await alice.page.locator(tid('message-input')).inputValue()).length, 4001, 'the text is kept');
});
