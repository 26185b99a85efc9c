// The user's own messages on their way out: queued while they cannot be sent, sent with a
// clientMsgId, confirmed by the server's ack (or failed by its error), and retried on demand
// with the same clientMsgId (the server does not publish it twice).

import { insertItem, removeItem } from './conversations.js';
import { updateStatus } from './message-list.js';
import * as socket from './socket.js';
import { me, state } from './state.js';

export const MAX_BODY = 4000;

function randomId() {
  if (window.crypto && crypto.getRandomValues) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

function canSend(conv) {
  if (!socket.isOpen()) return false;
  if (conv.type === 'room') return conv.joined;
  return true;
}

function transmit(conv, item) {
  if (item.status === 'queued' && conv.items[conv.items.length - 1] !== item) {
    // It enters the room's order only now: after whatever arrived while it waited.
    removeItem(conv, item);
    insertItem(conv, item);
  }
  // One id per message, kept across retries: the server publishes a clientMsgId it saw in the
  // last 2 minutes only once (the retry gets the first one's ack), so retrying a message
  // whose ack was lost (unavailable, a dropped connection) never leaves two copies.
  if (!item.clientMsgId) item.clientMsgId = randomId();
  item.status = 'pending';
  item.error = null;
  state.pending.set(item.clientMsgId, { conv, item });
  const frame = conv.type === 'room'
    ? { type: 'message', room: conv.id, body: item.body, clientMsgId: item.clientMsgId }
    : { type: 'direct', to: conv.id, body: item.body, clientMsgId: item.clientMsgId };
  if (!socket.send(frame)) {
    state.pending.delete(item.clientMsgId);
    item.status = 'queued';
  }
  updateStatus(item);
}

export function flushQueued(conv) {
  if (!canSend(conv)) return;
  for (const item of conv.items) if (item.mine && item.status === 'queued') transmit(conv, item);
}

export function send(conv, body) {
  const item = {
    kind: 'message', mine: true, from: me(), body, ts: Date.now(), status: 'queued',
  };
  insertItem(conv, item);
  if (canSend(conv)) transmit(conv, item);
}

export function retryItem(item) {
  const conv = [...state.convs.values()].find((c) => c.items.includes(item));
  if (!conv) return;
  // Move it to the end: it is a new attempt.
  removeItem(conv, item);
  item.ts = Date.now();
  item.status = 'queued';
  item.error = null;
  insertItem(conv, item);
  if (canSend(conv)) transmit(conv, item);
}

// `held`: a private message whose recipient is offline; the server keeps it for them.
export function confirmItem(conv, item, id, ts, held = false) {
  const dup = conv.ids.get(id);
  if (dup && dup !== item) removeItem(conv, dup); // history raced the ack
  item.id = id;
  if (ts) item.ts = ts;
  item.status = held ? 'held' : 'sent';
  item.error = null;
  conv.ids.set(id, item);
  updateStatus(item);
}
