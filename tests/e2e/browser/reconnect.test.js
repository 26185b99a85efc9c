// Losing the connection: the client shows it, reconnects with backoff, re-joins with `since`,
// catches up on what it missed and sends what was typed meanwhile.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  createRoom, env, freePort, joinByLink, launchBrowser, member, screenshot, send, startServer,
  tid, waitMessage, waitSystem,
} from './helpers.js';

let harness;
let server;
before(async () => { harness = await launchBrowser(); });
after(async () => {
  await harness?.close();
  await server?.stop();
});

test('a restarted instance: status shown, automatic reconnect, missed and queued messages delivered', async () => {
  const port = await freePort();
  const options = { port, redisUrl: env('RC_REDIS_URL'), secret: env('RC_TOKEN_SECRET') };
  server = await startServer(options);

  const alice = await harness.newUser(server.url);
  const bob = await harness.newUser(env('RC_URL_2'));
  const sent = []; // every frame alice's page sends, over every socket
  alice.page.on('websocket', (ws) => ws.on('framesent', (f) => {
    try { sent.push(JSON.parse(f.payload)); } catch { /* not JSON */ }
  }));
  const link = await createRoom(alice.page, 'alice', 'Resilience');
  await joinByLink(bob.page, link, 'bob');
  await member(alice.page, 'bob').waitFor();
  await send(alice.page, 'before the restart');
  await waitMessage(bob.page, 'before the restart');
  const lastId = await alice.page.locator(tid('message'), { hasText: 'before the restart' }).getAttribute('data-id');
  assert.ok(lastId, 'the acknowledged message carries its server id');

  // Alice's instance goes away (SIGTERM drains it: close code 1012).
  await server.stop('SIGTERM');
  const status = alice.page.locator(tid('conn-status'));
  await alice.page.locator(`${tid('conn-status')}[data-state="reconnecting"]`).waitFor();
  // 1012 reads "the server is moving you to another one"; a retry that failed since (the
  // only instance it knows is down) reads "the connection was lost".
  assert.match(await status.innerText(), /Disconnected: (the server is moving you to another one|the connection was lost)\. Retrying in \d+ s/);
  await alice.page.locator(tid('retry-now')).waitFor();
  await waitSystem(bob.page, 'alice left');

  // Meanwhile: bob writes in the room, alice types a message that has to wait.
  await send(bob.page, 'sent while alice was away');
  await waitMessage(bob.page, 'sent while alice was away', { status: 'sent' });
  await send(alice.page, 'typed while disconnected');
  await waitMessage(alice.page, 'typed while disconnected', { status: 'queued' });
  await screenshot(alice.page, 'reconnect-disconnected');

  // The instance comes back on the same address; the client reconnects by itself.
  server = await startServer(options);
  await alice.page.locator(`${tid('conn-status')}[data-state="online"]`).waitFor();
  await waitMessage(alice.page, 'sent while alice was away');
  await waitMessage(alice.page, 'typed while disconnected', { status: 'sent' });
  await waitMessage(bob.page, 'typed while disconnected');
  await waitSystem(bob.page, 'alice joined');
  await member(bob.page, 'alice').waitFor();
  await member(alice.page, 'bob').waitFor();

  // It re-joined with `since`: the last message it had seen.
  const joins = sent.filter((f) => f.type === 'join');
  assert.equal(joins.length, 2, `one join per connection (${JSON.stringify(joins)})`);
  assert.equal(joins[0].since, undefined);
  assert.equal(joins[1].since, lastId);
  for (const f of sent.filter((x) => x.type === 'message')) assert.ok(f.clientMsgId, 'every message has a clientMsgId');

  // Nothing shown twice.
  for (const page of [alice.page, bob.page]) {
    for (const text of ['before the restart', 'sent while alice was away', 'typed while disconnected']) {
      const n = await page.locator(`${tid('message-list')}:not([hidden]) ${tid('message-body')}`).getByText(text, { exact: true }).count();
      assert.equal(n, 1, `"${text}" shown once`);
    }
  }
  // Live traffic flows again both ways.
  await send(bob.page, 'welcome back');
  await waitMessage(alice.page, 'welcome back');
  await screenshot(alice.page, 'reconnect-back-online');
  assert.deepEqual(alice.pageErrors, []);
});
