// Errors are shown plainly: REST problem details, and WebSocket error frames on the message
// they answer.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  activeList, createRoom, env, joinByLink, launchBrowser, member, screenshot, send, storedIdentity,
  tid, waitConnected, waitSystem,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

test('joining an unknown room says it is not found (or needs an invite); the lobby asks for a name first', async () => {
  const user = await harness.newUser(env('RC_URL_1'));
  await user.page.goto('/');
  // No name yet: the lobby says so and focuses the field.
  await user.page.locator(tid('join-room-id')).fill('no-such-room');
  await user.page.locator(tid('join-room')).click();
  await user.page.locator(tid('error-banner'), { hasText: 'Pick a display name' }).waitFor();
  assert.equal(await user.page.evaluate(() => document.activeElement?.dataset.testid), 'name-input');

  await user.page.locator(tid('name-input')).fill('dora');
  await user.page.locator(tid('join-room')).click();
  // v2: a 404 does not say whether the room is missing or private.
  await user.page.locator(tid('error-banner'), { hasText: 'room not found or you need an invite' }).waitFor();
  assert.match(await user.page.locator(tid('error-text')).innerText(), /no-such-room/);
  assert.ok(await user.page.locator(tid('lobby')).isVisible(), 'still in the lobby');
  // The guest identity it got on the way is kept (and sent as a Bearer token).
  const identity = await storedIdentity(user.page);
  assert.equal(identity.kind, 'guest');
  assert.equal(identity.user.name, 'dora');
  assert.ok(identity.token && identity.expiresAt > Date.now(), `a token with its expiry (${JSON.stringify(identity)})`);

  // A link to a room that does not exist says so as well.
  await user.page.goto('/?room=00000000-0000-0000-0000-000000000000');
  await user.page.locator(tid('error-banner'), { hasText: 'room not found or you need an invite' }).waitFor();
  await screenshot(user.page, 'errors-unknown-room');
});

test('a private message to someone who went offline is kept for them and reaches them when they are back', async () => {
  const alice = await harness.newUser(env('RC_URL_1'));
  const bob = await harness.newUser(env('RC_URL_2'));
  const link = await createRoom(alice.page, 'alice', 'Errors');
  await joinByLink(bob.page, link, 'bob');
  await member(alice.page, 'bob').click();
  await alice.page.locator(tid('private-tag')).waitFor();
  const bobId = (await storedIdentity(bob.page)).user.id;
  await bob.page.close();
  await member(alice.page, 'bob').waitFor({ state: 'detached' });

  await send(alice.page, 'are you there?');
  const item = alice.page.locator(`${tid('dm-message')}[data-status="held"]`, { hasText: 'are you there?' });
  await item.waitFor();
  assert.match(await item.locator('.status').innerText(), /they are offline/);
  assert.equal(await alice.page.locator(tid('error-banner')).isVisible(), false, 'not an error');
  await screenshot(alice.page, 'errors-recipient-offline-held');

  // Bob comes back (same browser profile and instance, so the same identity).
  bob.page = await bob.context.newPage();
  const url = new URL(link);
  await bob.page.goto(url.pathname + url.search);
  await bob.page.locator(tid('chat')).waitFor();
  assert.equal((await storedIdentity(bob.page)).user.id, bobId, 'the same user as before');
  await bob.page.locator(tid('conv-dm'), { hasText: 'alice' }).click();
  await bob.page.locator(tid('dm-message'), { hasText: 'are you there?' }).waitFor();
  await screenshot(bob.page, 'errors-held-message-delivered');

  // The conversation is kept: after a reload it is listed again (from `GET /directs`, before
  // anyone opens it), and opening it shows the message again, from history.
  await bob.page.reload();
  await bob.page.locator(tid('chat')).waitFor();
  await bob.page.locator(tid('conv-dm'), { hasText: 'alice' }).click();
  await bob.page.locator(tid('dm-message'), { hasText: 'are you there?' }).waitFor();
  assert.equal(await bob.page.locator(tid('dm-message'), { hasText: 'are you there?' }).count(), 1);

  // Closed, it stays closed across a reload, until a newer message brings it back.
  await bob.page.locator(tid('close-dm')).click();
  await bob.page.locator(tid('conv-dm')).waitFor({ state: 'detached' });
  const listed = bob.page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('/directs'));
  await bob.page.reload();
  await bob.page.locator(tid('chat')).waitFor();
  await waitConnected(bob.page);
  // The server's list came, and the page did what it says: still no private conversation.
  assert.equal((await listed).status(), 200);
  await bob.page.evaluate(() => new Promise((resolve) => { setTimeout(resolve, 0); }));
  assert.equal(await bob.page.locator(tid('conv-dm')).count(), 0, 'a closed conversation stays closed');
  await member(alice.page, 'bob').click();
  await send(alice.page, 'back again?');
  await bob.page.locator(tid('conv-dm'), { hasText: 'alice' }).waitFor();

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

test('a private message to someone who shares no room any more is marked failed with forbidden', async () => {
  const alice = await harness.newUser(env('RC_URL_1'));
  const bob = await harness.newUser(env('RC_URL_2'));
  const link = await createRoom(alice.page, 'alice', 'Shared for a while');
  await joinByLink(bob.page, link, 'bob', 'Shared for a while');
  // Bob has a room of his own too, so he stays connected after leaving alice's.
  await bob.page.locator(tid('add-room-toggle')).click();
  await bob.page.locator(tid('sb-create-room-name')).fill('Bob alone');
  await bob.page.locator(tid('sb-create-room')).click();
  await bob.page.locator(tid('conv-title'), { hasText: 'Bob alone' }).waitFor();

  await member(alice.page, 'bob').click();
  await alice.page.locator(tid('private-tag')).waitFor();
  await send(alice.page, 'while we share a room');
  await alice.page.locator(`${tid('dm-message')}[data-status="sent"]`, { hasText: 'while we share a room' }).waitFor();

  // Bob leaves alice's room for good (he is still online, in his own room).
  await bob.page.locator(tid('conv-room'), { hasText: 'Shared for a while' }).click();
  await bob.page.locator(tid('leave-room')).click();
  await bob.page.locator(tid('conv-title'), { hasText: 'Bob alone' }).waitFor();
  await alice.page.locator(tid('conv-room')).click();
  await waitSystem(alice.page, 'bob left');
  await alice.page.locator(tid('conv-dm'), { hasText: 'bob' }).click();

  await send(alice.page, 'after you left');
  const item = alice.page.locator(`${tid('dm-message')}[data-status="failed"]`, { hasText: 'after you left' });
  await item.waitFor();
  const reason = await item.locator(tid('message-error')).innerText();
  assert.match(reason, /direct messages go to users who share a room with you/);
  assert.match(reason, /forbidden/);
  await screenshot(alice.page, 'errors-dm-forbidden');
  assert.deepEqual(alice.pageErrors, []);
  assert.deepEqual(bob.pageErrors, []);
});
