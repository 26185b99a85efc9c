// Message bodies are text: markup in a body shows literally and never runs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  activeList, createRoom, env, joinByLink, launchBrowser, screenshot, send, tid, waitMessage,
} from './helpers.js';

let harness;
before(async () => { harness = await launchBrowser(); });
after(async () => { await harness?.close(); });

const PAYLOADS = [
  '<img src=x onerror=alert(1)>',
  '<script>alert(2)</script><b>not bold</b>',
  '"><svg onload=alert(3)>',
];

test('a body of <img src=x onerror=alert(1)> shows as literal text and runs nothing', async () => {
  const alice = await harness.newUser(env('RC_URL_1'));
  const bob = await harness.newUser(env('RC_URL_2'));
  // Markup in names and room names is text too.
  const link = await createRoom(alice.page, 'alice <i>x</i>', '<b>room</b>');
  await joinByLink(bob.page, link, '<img src=y onerror=alert(4)>');

  for (const body of PAYLOADS) await send(alice.page, body);
  for (const body of PAYLOADS) {
    await waitMessage(alice.page, body, { status: 'sent' });
    await waitMessage(bob.page, body);
  }

  // Also as history, after a reload.
  await bob.page.reload();
  for (const body of PAYLOADS) await waitMessage(bob.page, body);

  for (const u of [alice, bob]) {
    const list = activeList(u.page);
    const texts = await list.locator(tid('message-body')).allTextContents();
    for (const body of PAYLOADS) assert.ok(texts.includes(body), `"${body}" is shown as text`);
    assert.equal(await list.locator('img, script, svg, b, i').count(), 0, 'no element from a message body');
    assert.equal(await u.page.locator('img').count(), 0, 'no <img> anywhere on the page');
    assert.equal(await u.page.locator(tid('conv-title')).textContent(), '<b>room</b>');
    assert.deepEqual(u.dialogs, [], 'no dialog opened');
    assert.deepEqual(u.pageErrors, [], 'no page errors');
  }
  assert.ok(await alice.page.locator(`${tid('member')}[data-name="<img src=y onerror=alert(4)>"]`).count() === 1);
  await screenshot(bob.page, 'xss-literal-text');
});
