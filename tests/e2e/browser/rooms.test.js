// Several rooms in one page, one identity; reload keeps you in your rooms; leave (for good)
// and sign out.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  createRoom, env, launchBrowser, member, rest, screenshot, send, storedIdentity, tid, waitMessage,
  waitSystem,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

test('two rooms, one user; reload keeps the rooms; leave; sign out', async () => {
  const alice = await harness.newUser(env('RC_URL_1'));
  const bob = await harness.newUser(env('RC_URL_2'));
  const linkA = await createRoom(alice.page, 'alice', 'First room');
  const me = await alice.page.evaluate(() => window.roomcast.user);

  // A second room from the sidebar: same user id in both.
  await alice.page.locator(tid('add-room-toggle')).click();
  await alice.page.locator(tid('sb-create-room-name')).fill('Second room');
  await alice.page.locator(tid('sb-create-room')).click();
  await alice.page.locator(tid('conv-title'), { hasText: 'Second room' }).waitFor();
  assert.equal(await alice.page.locator(tid('conv-room')).count(), 2);
  const linkB = await alice.page.locator(tid('share-link')).inputValue();
  assert.notEqual(linkA, linkB);
  assert.match(alice.page.url(), /\?room=/);
  assert.deepEqual(await alice.page.evaluate(() => window.roomcast.user), me, 'one identity for both rooms');

  // Bob joins the second room by pasting its link; messages stay in their rooms.
  await bob.page.goto('/');
  await bob.page.locator(tid('name-input')).fill('bob');
  await bob.page.locator(tid('join-room-id')).fill(linkB);
  await bob.page.locator(tid('join-room-id')).press('Enter');
  await bob.page.locator(tid('conv-title'), { hasText: 'Second room' }).waitFor();
  await member(alice.page, 'bob').waitFor();
  const bobId = await bob.page.evaluate(() => window.roomcast.user.id);
  assert.equal(await member(alice.page, 'bob').getAttribute('data-user-id'), bobId);
  await send(bob.page, 'hello second room');
  await waitMessage(alice.page, 'hello second room');
  await alice.page.locator(tid('conv-room'), { hasText: 'First room' }).click();
  await send(alice.page, 'only in the first room');
  await waitMessage(alice.page, 'only in the first room', { status: 'sent' });
  assert.equal(await member(alice.page, 'bob').count(), 0, 'bob is not in the first room');

  // Reload: back in both rooms, same user, history shown, still connected.
  await alice.page.reload();
  await alice.page.locator(`${tid('conn-status')}[data-state="online"]`).waitFor();
  assert.equal(await alice.page.locator(tid('conv-room')).count(), 2);
  assert.deepEqual(await alice.page.evaluate(() => window.roomcast.user), me);
  await waitMessage(alice.page, 'only in the first room');
  await alice.page.locator(tid('conv-room'), { hasText: 'Second room' }).click();
  await waitMessage(alice.page, 'hello second room');
  await member(alice.page, 'bob').waitFor();
  await screenshot(alice.page, 'rooms-after-reload');

  // Leaving the second room (for good, v2): bob sees alice leave; alice keeps the first room;
  // the room has one member left.
  const roomB = new URL(linkB).searchParams.get('room');
  const bobToken = (await storedIdentity(bob.page)).token;
  const beforeLeave = await rest(env('RC_URL_2'), 'GET', `/rooms/${roomB}`, { token: bobToken });
  assert.equal(beforeLeave.status, 200);
  assert.equal(beforeLeave.body.memberCount, 2, JSON.stringify(beforeLeave.body));
  await alice.page.locator(tid('leave-room')).click();
  await waitSystem(bob.page, 'alice left');
  await alice.page.locator(tid('conv-title'), { hasText: 'First room' }).waitFor();
  assert.equal(await alice.page.locator(tid('conv-room')).count(), 1);
  const afterLeave = await rest(env('RC_URL_2'), 'GET', `/rooms/${roomB}`, { token: bobToken });
  assert.equal(afterLeave.body.memberCount, 1, `alice is no member any more: ${JSON.stringify(afterLeave.body)}`);
  assert.ok(!afterLeave.body.members.some((m) => m.id === me.id), 'alice is not listed');

  // Signing out: back to the lobby, name remembered.
  await alice.page.locator(tid('sign-out')).click();
  await alice.page.locator(tid('lobby')).waitFor();
  assert.equal(await alice.page.locator(tid('name-input')).inputValue(), 'alice');
  await alice.page.reload();
  await alice.page.locator(tid('lobby')).waitFor();
  assert.equal(await alice.page.locator(tid('name-input')).inputValue(), 'alice');
  assert.deepEqual(alice.pageErrors, []);
  assert.deepEqual(bob.pageErrors, []);
});
