// Private rooms (contract v2): joined only with an invite, across the two instances; leaving
// for good takes the room out of the user's list and out of reach.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  bodyText, createRoom, env, launchBrowser, member, onInstance, rest, screenshot, send,
  storedIdentity, tid, waitConnected, waitMessage, waitSystem,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

const NOT_FOUND = 'room not found or you need an invite';

test('a private room: a plain link is "not found / needs an invite"; the invite link joins, across instances', async () => {
  const url1 = env('RC_URL_1');
  const url2 = env('RC_URL_2');
  const alice = await harness.newUser(url1);
  const bob = await harness.newUser(url2);

  // Alice creates a private room on instance 1; its share link carries an invite.
  const link = await createRoom(alice.page, 'alice', 'Secret plans', { visibility: 'private' });
  const roomId = new URL(link).searchParams.get('room');
  const invite = new URL(link).searchParams.get('invite');
  assert.ok(roomId, `the link names the room: ${link}`);
  assert.ok(invite, `the link carries an invite: ${link}`);
  await alice.page.locator(`${tid('room-visibility')}[data-visibility="private"]`).waitFor();

  // Bob opens the plain link (no invite) on instance 2: not found, or he needs an invite.
  const plain = new URL(link);
  plain.searchParams.delete('invite');
  await bob.page.goto(plain.pathname + plain.search); // bob's pages are on instance 2
  await bob.page.locator(tid('invite')).waitFor();
  await bob.page.locator(tid('name-input')).fill('bob');
  await bob.page.locator(tid('join-invite')).click();
  await bob.page.locator(tid('error-banner'), { hasText: NOT_FOUND }).waitFor();
  assert.ok(await bob.page.locator(tid('lobby')).isVisible(), 'bob is still in the lobby');
  assert.ok(!(await bodyText(bob.page)).includes('Secret plans'), 'the room name is not revealed');
  await screenshot(bob.page, 'private-no-invite');
  // Over REST too, the room does not exist for him.
  const bobToken = (await storedIdentity(bob.page)).token;
  assert.equal((await rest(url2, 'GET', `/rooms/${roomId}`, { token: bobToken })).status, 404);

  // Alice's invite link (on instance 2) lets him in, under the same guest identity.
  const bobUser = (await storedIdentity(bob.page)).user;
  const url = new URL(onInstance(link, url2));
  await bob.page.goto(url.pathname + url.search);
  await bob.page.locator(tid('invite')).waitFor();
  await bob.page.locator(tid('join-invite')).click();
  await bob.page.locator(tid('conv-title'), { hasText: 'Secret plans' }).waitFor();
  await waitConnected(bob.page);
  assert.deepEqual((await storedIdentity(bob.page)).user, bobUser, 'the same guest');
  await member(alice.page, 'bob').waitFor();
  await member(bob.page, 'alice').waitFor();
  await waitSystem(alice.page, 'bob joined');

  await send(alice.page, 'only for invited eyes');
  await waitMessage(bob.page, 'only for invited eyes');
  await send(bob.page, 'bob made it in');
  await waitMessage(bob.page, 'bob made it in', { status: 'sent' });
  await waitMessage(alice.page, 'bob made it in');
  // Two members now, both online.
  await alice.page.locator(tid('member-count'), { hasText: '2 members' }).waitFor();
  await alice.page.locator(tid('members-title'), { hasText: 'Online · 2' }).waitFor();
  await screenshot(alice.page, 'private-room-alice');
  await screenshot(bob.page, 'private-room-bob');

  for (const u of [alice, bob]) {
    assert.deepEqual(u.pageErrors, [], 'no page errors');
    assert.deepEqual(u.consoleErrors.filter((e) => !/404|Not Found/i.test(e)), [], 'no console errors');
    assert.deepEqual(u.dialogs, []);
  }
});

test('leaving for good: the room leaves the list, and the private room is 404 for the leaver', async () => {
  const url1 = env('RC_URL_1');
  const url2 = env('RC_URL_2');
  const alice = await harness.newUser(url1);
  const bob = await harness.newUser(url2);
  const link = await createRoom(alice.page, 'alice', 'Private for a while', { visibility: 'private' });
  const roomId = new URL(link).searchParams.get('room');

  const url = new URL(onInstance(link, url2));
  await bob.page.goto(url.pathname + url.search);
  await bob.page.locator(tid('name-input')).fill('bob');
  await bob.page.locator(tid('join-invite')).click();
  await bob.page.locator(tid('conv-title'), { hasText: 'Private for a while' }).waitFor();
  await waitConnected(bob.page);
  await member(alice.page, 'bob').waitFor();
  const bobToken = (await storedIdentity(bob.page)).token;
  const listed = await rest(url2, 'GET', '/rooms?limit=200', { token: bobToken });
  assert.ok(listed.body.rooms.some((r) => r.roomId === roomId), 'a member sees the private room in GET /rooms');

  // Bob leaves (his only room): alice sees him go, he is back in the lobby.
  await bob.page.locator(tid('leave-room')).click();
  await bob.page.locator(tid('lobby')).waitFor();
  await waitSystem(alice.page, 'bob left');
  await member(alice.page, 'bob').waitFor({ state: 'detached' });

  // The lobby's list no longer has the room; the REST API agrees, and the room is 404 for him.
  await bob.page.locator(tid('rooms-refresh')).click();
  await bob.page.locator(`${tid('rooms-empty')}:not([hidden]), ${tid('room-item')}`).first().waitFor();
  assert.equal(await bob.page.locator(`${tid('room-item')}[data-room-id="${roomId}"]`).count(), 0, 'not in bob\'s list');
  const after1 = await rest(url2, 'GET', '/rooms?limit=200', { token: bobToken });
  assert.equal(after1.status, 200);
  assert.ok(!after1.body.rooms.some((r) => r.roomId === roomId), 'not in GET /rooms for bob');
  const gone = await rest(url2, 'GET', `/rooms/${roomId}`, { token: bobToken });
  assert.equal(gone.status, 404, `GET /rooms/{id} after leaving: ${gone.status} ${JSON.stringify(gone.body)}`);
  assert.equal(gone.body.code, 'room_not_found', JSON.stringify(gone.body));
  assert.match(gone.headers.get('content-type'), /application\/problem\+json/);

  // Reloading does not bring it back either.
  await bob.page.reload();
  await bob.page.locator(tid('lobby')).waitFor();
  assert.equal(await bob.page.locator(tid('conv-room')).count(), 0);
  const aliceToken = (await storedIdentity(alice.page)).token;
  const info = await rest(url1, 'GET', `/rooms/${roomId}`, { token: aliceToken });
  assert.equal(info.body.memberCount, 1, `only alice is left: ${JSON.stringify(info.body)}`);
  assert.deepEqual(bob.pageErrors, []);
  assert.deepEqual(alice.pageErrors, []);
});
