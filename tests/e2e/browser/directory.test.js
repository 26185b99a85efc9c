// The lobby's list of rooms (contract v2: GET /rooms is paginated, newest first): "More rooms"
// fetches the next page; another user's private room is never listed; Join works from it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  env, guest, launchBrowser, member, rest, screenshot, tid, waitConnected,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

const PAGE = 10; // the client's page size (frontendws/api.js ROOMS_PAGE)

test('the lobby lists rooms a page at a time; a private room of alice\'s is not listed to bob', async () => {
  const url1 = env('RC_URL_1');
  const url2 = env('RC_URL_2');
  const run = Date.now().toString(36);

  // Alice, over REST on instance 1: more public rooms than one page, then a private one.
  const alice = await guest(url1, 'alice');
  const names = [];
  for (let i = 1; i <= PAGE + 3; i += 1) {
    const name = `Dir ${run} #${String(i).padStart(2, '0')}`;
    const res = await rest(url1, 'POST', '/create-room', { token: alice.token, body: { name } });
    assert.equal(res.status, 201, `create ${name}: ${res.status} ${JSON.stringify(res.body)}`);
    assert.equal(res.body.visibility, 'public');
    names.push(name);
  }
  const secret = await rest(url1, 'POST', '/create-room', {
    token: alice.token, body: { name: `Dir ${run} private`, visibility: 'private' },
  });
  assert.equal(secret.status, 201, JSON.stringify(secret.body));
  assert.equal(secret.body.visibility, 'private');

  // Bob, in the browser on instance 2: the first page is the newest rooms, alice's.
  const bob = await harness.newUser(url2);
  await bob.page.goto('/');
  await bob.page.locator(tid('name-input')).fill('bob');
  await bob.page.locator(tid('rooms-refresh')).click();
  const items = bob.page.locator(tid('room-item'));
  await items.first().waitFor();
  assert.equal(await items.count(), PAGE, 'one page');
  const firstPage = await bob.page.locator(tid('room-item-name')).allTextContents();
  // Newest first: the first page is alice's rooms (created last); within a page the order is
  // the server's (rooms made in the same instant may tie).
  assert.ok(firstPage.every((n) => names.includes(n)), `the newest rooms first: ${firstPage.join(', ')}`);
  assert.ok(!firstPage.includes(`Dir ${run} private`), 'alice\'s private room is not listed to bob');
  await bob.page.locator(tid('rooms-more')).waitFor();
  await screenshot(bob.page, 'lobby-room-list', { fullPage: true });

  // "More rooms": the next page follows, without repeats, still without the private room.
  await bob.page.locator(tid('rooms-more')).click();
  await bob.page.locator(tid('room-item')).nth(PAGE).waitFor();
  const shown = await bob.page.locator(tid('room-item-name')).allTextContents();
  assert.ok(shown.length > PAGE && shown.length <= 2 * PAGE, `a second page (${shown.length} rooms)`);
  assert.deepEqual(new Set(shown.slice(0, names.length)), new Set(names), 'all of alice\'s rooms come first');
  const ids = await bob.page.locator(tid('room-item')).evaluateAll((els) => els.map((e) => e.dataset.roomId));
  assert.equal(new Set(ids).size, ids.length, 'no room twice');
  assert.ok(!ids.includes(secret.body.roomId), 'the private room is on no page');

  // Alice sees her private room in her own list, marked private (her identity stored as the
  // client stores it).
  const alicePage = await harness.newUser(url1);
  await alicePage.page.goto('/');
  await alicePage.page.evaluate((identity) => {
    localStorage.setItem('roomcast.identity', JSON.stringify(identity));
  }, { kind: 'guest', token: alice.token, expiresAt: Date.parse(alice.expiresAt), user: alice.user });
  await alicePage.page.reload();
  const mine = alicePage.page.locator(`${tid('room-item')}[data-room-id="${secret.body.roomId}"]`);
  await mine.waitFor();
  await mine.locator(tid('room-item-private')).waitFor();
  await screenshot(alicePage.page, 'lobby-room-list-alice');

  // Bob joins one of alice's public rooms from the list.
  await bob.page.locator(tid('room-item')).filter({ hasText: names[0] }).locator(tid('room-join')).click();
  await bob.page.locator(tid('conv-title'), { hasText: names[0] }).waitFor();
  await waitConnected(bob.page);
  await member(bob.page, 'bob').waitFor();
  assert.deepEqual(bob.pageErrors, []);
  assert.deepEqual(bob.consoleErrors, [], 'no console errors');
  assert.deepEqual(alicePage.pageErrors, []);
  assert.deepEqual(alicePage.consoleErrors, [], 'no console errors');
});
