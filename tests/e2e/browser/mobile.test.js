// At phone width (360x740) the client renders without horizontal scrolling.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  activeList, createRoom, env, joinByLink, launchBrowser, member, screenshot, send, tid, waitMessage,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

const PHONE = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

async function assertNoHorizontalScroll(page, where) {
  const m = await page.evaluate(() => ({
    docScroll: document.documentElement.scrollWidth,
    docClient: document.documentElement.clientWidth,
    bodyScroll: document.body.scrollWidth,
    inner: window.innerWidth,
  }));
  assert.ok(m.docScroll <= m.docClient, `${where}: page is ${m.docScroll}px wide in a ${m.docClient}px viewport`);
  assert.ok(m.bodyScroll <= m.docClient, `${where}: body is ${m.bodyScroll}px wide in a ${m.docClient}px viewport`);
  assert.equal(m.inner, 360, `${where}: the layout viewport is the phone's width`);
  // Scrolling sideways moves nothing.
  const x = await page.evaluate(() => { window.scrollTo(200, window.scrollY); return window.scrollX; });
  assert.equal(x, 0, `${where}: the page does not scroll horizontally`);
}

test('a phone-width (360x740) screenshot renders without horizontal scroll', async () => {
  const phone = await harness.newUser(env('RC_URL_1'), PHONE);
  const friend = await harness.newUser(env('RC_URL_2'));

  await phone.page.goto('/');
  await phone.page.locator(tid('name-input')).waitFor();
  await assertNoHorizontalScroll(phone.page, 'lobby');
  await screenshot(phone.page, 'mobile-lobby');

  const link = await createRoom(phone.page, 'Maximilian Longname', 'Weekend hiking trip planning');
  await joinByLink(friend.page, link, 'Bartholomew');
  await member(phone.page, 'Bartholomew').waitFor();

  const long = `${'a'.repeat(300)} and https://example.invalid/${'very-long-path-segment/'.repeat(8)}`;
  await send(friend.page, long);
  await send(friend.page, 'Saturday works for me.\nShall we meet at the station at 8?');
  await send(phone.page, 'Sounds good! I will bring snacks.');
  await waitMessage(phone.page, long);
  await waitMessage(phone.page, 'Sounds good! I will bring snacks.', { status: 'sent' });

  // The long unbroken message wraps inside the screen.
  const box = await activeList(phone.page).locator(tid('message')).filter({ hasText: 'aaaa' }).boundingBox();
  assert.ok(box && box.x >= 0 && box.x + box.width <= 360, `the long message fits (${JSON.stringify(box)})`);
  await assertNoHorizontalScroll(phone.page, 'chat');
  await screenshot(phone.page, 'mobile-chat');

  // The composer and the member list are on screen and usable.
  const composer = await phone.page.locator(tid('message-input')).boundingBox();
  assert.ok(composer.y + composer.height <= 740 && composer.x + composer.width <= 360, 'composer on screen');
  await member(phone.page, 'Bartholomew').click();
  await phone.page.locator(tid('private-tag')).waitFor();
  await assertNoHorizontalScroll(phone.page, 'private chat');
  await screenshot(phone.page, 'mobile-private');
  assert.deepEqual(phone.pageErrors, []);
});
