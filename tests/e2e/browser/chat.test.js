// Two demo-server instances sharing one Redis behave as one chat, seen through real browsers.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  activeList, bodyText, createRoom, env, joinByLink, launchBrowser, member, screenshot, send,
  tid, waitMessage, waitSystem,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

test('two instances, one chat: presence, join/leave notices, messages both ways, private messages', async () => {
  const url1 = env('RC_URL_1');
  const url2 = env('RC_URL_2');
  const alice = await harness.newUser(url1);
  const bob = await harness.newUser(url2);
  const carol = await harness.newUser(url1);

  // Alice creates a room on instance 1.
  const link = await createRoom(alice.page, 'alice', 'Launch plans');
  const roomId = new URL(link).searchParams.get('room');
  assert.match(roomId, /^[0-9a-f-]{36}$/, `share link ${link} names the room`);
  assert.equal(new URL(link).origin, new URL(url1).origin);
  assert.equal(new URL(link).searchParams.get('invite'), null, 'a public room needs no invite');
  await member(alice.page, 'alice').waitFor();

  // Bob opens the shareable link on instance 2.
  const bobLink = new URL(new URL(link).pathname + new URL(link).search, url2).toString();
  await joinByLink(bob.page, bobLink, 'bob', 'Launch plans');
  assert.equal(await bob.page.locator(tid('conv-title')).textContent(), 'Launch plans');

  // Both see each other online; alice sees the join notice.
  await member(alice.page, 'bob').waitFor();
  await member(bob.page, 'alice').waitFor();
  await waitSystem(alice.page, 'bob joined');

  // Messages flow both ways, each confirmed to its sender.
  await send(alice.page, 'hello from alice on instance 1');
  await waitMessage(alice.page, 'hello from alice on instance 1', { status: 'sent' });
  await waitMessage(bob.page, 'hello from alice on instance 1');
  await send(bob.page, 'hi alice, bob here on instance 2');
  await waitMessage(bob.page, 'hi alice, bob here on instance 2', { status: 'sent' });
  await waitMessage(alice.page, 'hi alice, bob here on instance 2');

  // A multi-line message keeps its lines (Shift+Enter is a newline, Enter sends).
  const input = alice.page.locator(tid('message-input'));
  await input.fill('line one');
  await input.press('Shift+Enter');
  await input.type('line two');
  await input.press('Enter');
  await waitMessage(bob.page, 'line one\nline two');

  // Carol joins too, on instance 1; everyone sees her.
  await joinByLink(carol.page, link, 'carol');
  await waitSystem(alice.page, 'carol joined');
  await waitSystem(bob.page, 'carol joined');
  await member(carol.page, 'alice').waitFor();
  await member(carol.page, 'bob').waitFor();
  // Carol got the recent history on joining.
  await waitMessage(carol.page, 'hi alice, bob here on instance 2');

  // Alice sends bob a private message by clicking him in the member list.
  await member(alice.page, 'bob').click();
  await alice.page.locator(tid('private-tag')).waitFor();
  assert.equal(await alice.page.locator(tid('conv-title')).textContent(), 'bob');
  const secret = 'psst bob, this one is just for you';
  await send(alice.page, secret);
  await waitMessage(alice.page, secret, { testid: 'dm-message', status: 'sent' });

  // Bob gets it in a private conversation, marked private and unread.
  const bobDm = bob.page.locator(`${tid('conv-dm')}[data-conv^="dm:"]`, { hasText: 'alice' });
  await bobDm.locator(tid('unread')).waitFor();
  await bobDm.click();
  await waitMessage(bob.page, secret, { testid: 'dm-message' });
  await bob.page.locator(tid('private-tag')).waitFor();
  await send(bob.page, 'got it, thanks');
  await alice.page.locator(`${tid('conv-dm')}`, { hasText: 'bob' }).click();
  await waitMessage(alice.page, 'got it, thanks', { testid: 'dm-message' });

  // Carol does not see it: a room message alice sends after it reaches carol, the DM never does.
  await alice.page.locator(tid('conv-room')).first().click();
  await send(alice.page, 'back in the room');
  await waitMessage(carol.page, 'back in the room');
  assert.ok(!(await bodyText(carol.page)).includes(secret), 'carol must not see the private message');
  assert.equal(await carol.page.locator(tid('conv-dm')).count(), 0, 'carol has no private conversation');
  assert.equal(await carol.page.locator(tid('dm-message')).count(), 0);

  await screenshot(bob.page, 'chat-bob-private');
  await alice.page.locator(tid('conv-room')).first().click();
  await screenshot(alice.page, 'chat-alice-room');

  // Bob closes his page: alice and carol see him leave.
  await bob.page.close();
  await waitSystem(alice.page, 'bob left');
  await waitSystem(carol.page, 'bob left');
  await member(alice.page, 'bob').waitFor({ state: 'detached' });
  assert.equal(await member(alice.page, 'carol').count(), 1);
  await screenshot(alice.page, 'chat-alice-after-bob-left');

  assert.equal(await activeList(alice.page).locator('img').count(), 0);
  for (const u of [alice, carol]) {
    assert.deepEqual(u.pageErrors, [], 'no page errors');
    assert.deepEqual(u.dialogs, [], 'no dialogs');
  }
});
