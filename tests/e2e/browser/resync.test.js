// Redis goes away and comes back: sends fail plainly (`unavailable`), the servers send
// `resync`, and the client reloads history, says so, and can resend what failed.
//
// This test has its own Redis and two demo-server instances on it, so that stopping that
// Redis disturbs no other test.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';

import {
  createRoom, freePort, joinByLink, launchBrowser, member, redisCli, screenshot, send,
  startRedis, startServer, tempDir, tid, waitMessage,
} from './helpers.js';

let harness;
const procs = [];
const redisDir = tempDir('roomcast-resync-redis-');
before(async () => { harness = await launchBrowser(); });
after(async () => {
  await harness?.close();
  for (const p of procs.reverse()) await p.stop('SIGKILL');
  rmSync(redisDir, { recursive: true, force: true });
});

test('Redis restarts: unavailable errors shown, resync notice, history reloaded, retry works', async () => {
  const redisPort = await freePort();
  let redis = await startRedis(redisPort, { dir: redisDir });
  procs.push(redis);
  const redisUrl = `redis://127.0.0.1:${redisPort}/`;
  const secret = 'resync-test-secret';
  const s1 = await startServer({ port: await freePort(), redisUrl, secret });
  const s2 = await startServer({ port: await freePort(), redisUrl, secret });
  procs.push(s1, s2);

  const alice = await harness.newUser(s1.url);
  const bob = await harness.newUser(s2.url);
  const link = await createRoom(alice.page, 'alice', 'Broker trouble');
  await joinByLink(bob.page, new URL(new URL(link).search, s2.url).toString(), 'bob');
  await member(alice.page, 'bob').waitFor();
  await send(alice.page, 'before the outage');
  await waitMessage(bob.page, 'before the outage');

  // Keep the data across the restart (this Redis does not save on its own), then kill it.
  await redisCli(redisPort, 'SAVE');
  await redis.stop('SIGKILL');

  // A message sent now cannot be published: it is marked failed with the server's reason.
  await send(alice.page, 'sent during the outage');
  const failed = alice.page.locator(`${tid('message')}[data-status="failed"]`, { hasText: 'sent during the outage' });
  await failed.waitFor();
  assert.match(await failed.locator(tid('message-error')).innerText(), /unavailable/);
  await alice.page.locator(tid('error-banner'), { hasText: 'unavailable' }).waitFor();
  await screenshot(alice.page, 'resync-unavailable');

  // Redis is back (same port, same data): each instance resubscribes and sends `resync`.
  redis = await startRedis(redisPort, { dir: redisDir });
  procs.push(redis);
  await alice.page.locator(tid('resync-notice')).first().waitFor();
  await bob.page.locator(tid('resync-notice')).first().waitFor();

  // Retry the failed message; it reaches bob.
  await failed.locator(tid('retry-message')).click();
  await waitMessage(alice.page, 'sent during the outage', { status: 'sent' });
  await waitMessage(bob.page, 'sent during the outage');
  await send(bob.page, 'bob after the outage');
  await waitMessage(alice.page, 'bob after the outage');
  const shown = await bob.page.locator(`${tid('message-list')}:not([hidden]) ${tid('message-body')}`).getByText('before the outage', { exact: true }).count();
  assert.equal(shown, 1, 'the history reload shows nothing twice');
  await screenshot(alice.page, 'resync-recovered');
  assert.deepEqual(alice.pageErrors, []);
  assert.deepEqual(bob.pageErrors, []);
});
