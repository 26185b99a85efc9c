// A conversation's history over REST: a room's recent page when the room is joined (merged with
// what is shown, in the room's order), a private conversation's when it is first shown, older
// pages on demand, the verdict on messages whose ack the connection lost, and the list of our
// private conversations that the server keeps.

import * as api from './api.js';
import {
  dmConv, insertItem, messageItem, roomGone,
} from './conversations.js';
import { scrollToBottom, updateStatus } from './message-list.js';
import { confirmItem } from './outbox.js';
import { showError } from './render.js';
import { dmClosed, me, state } from './state.js';

// Merges a page of history (oldest first) into the room: messages already shown are kept
// where they are; a missing one goes just before the next one that is shown (or at the end),
// so the room's order holds without comparing ids.
function mergeHistory(conv, messages) {
  let before = null;
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    const m = messages[i];
    if (!m || m.type !== frameType(conv)) continue;
    const known = conv.ids.get(m.id);
    if (known) {
      before = known;
      continue;
    }
    if (me() && m.from.id === me().id) {
      // One of ours that the connection lost before its ack: confirm it instead.
      const lost = conv.items.find((it) => it.mine && it.status === 'unconfirmed' && it.body === m.body);
      if (lost) {
        confirmItem(conv, lost, m.id, m.ts);
        before = lost;
        continue;
      }
    }
    const item = messageItem(m, { fromHistory: true });
    insertItem(conv, item, before);
    before = item;
  }
}

// The frames a conversation's history holds, and where its pages come from.
const frameType = (conv) => (conv.type === 'room' ? 'message' : 'direct');
const fetchPage = (conv, before = null) => (conv.type === 'room'
  ? api.getMessages(conv.id, before)
  : api.getDirects(conv.id, before));

/**
 * Our private conversations the server keeps (the most recent 50), listed beside the rooms
 * after a reload or a reconnect (but those the user closed, until a newer message); each
 * one's messages load when it is shown.
 */
export async function loadConversations() {
  let page;
  try {
    page = await api.getConversations();
  } catch (err) {
    showError(`Could not load your private conversations: ${api.describeError(err)}`);
    return;
  }
  for (const c of page.conversations || []) {
    if (!c || !c.user || !c.user.id || (me() && c.user.id === me().id)) continue;
    // One the user closed comes back only with a message newer than those it showed.
    if (dmClosed(c.user.id, c.lastMessage && c.lastMessage.id)) continue;
    dmConv(c.user);
  }
}

/** A private conversation's history, the first time it is shown or receives a message. */
export function ensureDirectHistory(conv) {
  if (conv.type !== 'dm' || conv.historyLoaded || conv.historyLoading) return;
  conv.historyLoading = true;
  loadHistory(conv).finally(() => { conv.historyLoading = false; });
}

export async function loadHistory(conv) {
  let page;
  try {
    page = await fetchPage(conv);
  } catch (err) {
    if (err.status === 404) roomGone(conv);
    else showError(`Could not load the history of ${conv.name}: ${api.describeError(err)}`);
    return false;
  }
  if (state.convs.get(conv.key) !== conv) return false;
  mergeHistory(conv, page.messages || []);
  if (!conv.historyLoaded) {
    conv.historyLoaded = true;
    conv.nextBefore = page.nextBefore || null;
    conv.olderEl.hidden = !conv.nextBefore;
    if (conv.key === state.active) scrollToBottom(conv);
  }
  return true;
}

export async function loadOlder(conv) {
  if (!conv.nextBefore) return;
  let page;
  try {
    page = await fetchPage(conv, conv.nextBefore);
  } catch (err) {
    showError(`Could not load older messages: ${api.describeError(err)}`);
    return;
  }
  const list = conv.listEl;
  const fromBottom = list.scrollHeight - list.scrollTop;
  const first = conv.items[0] || null;
  for (const m of page.messages || []) {
    if (!m || m.type !== frameType(conv) || conv.ids.has(m.id)) continue;
    insertItem(conv, messageItem(m, { fromHistory: true }), first);
  }
  conv.nextBefore = page.nextBefore || null;
  conv.olderEl.hidden = !conv.nextBefore;
  list.scrollTop = list.scrollHeight - fromBottom;
}

// After a reconnect: what the server confirmed was merged; the rest was lost.
export function failUnconfirmed(conv) {
  for (const item of conv.items) {
    if (item.mine && item.status === 'unconfirmed') {
      item.status = 'failed';
      item.error = 'the connection dropped before the server confirmed it';
      updateStatus(item);
    }
  }
}
