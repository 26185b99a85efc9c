// The live side of the chat: joining rooms over the socket, what the page does when the socket
// opens or closes, and the handler of each server frame (socket.js dispatches them here).

import * as api from './api.js';
import {
  dmConv, insertItem, lookupUser, messageItem, roomGone, systemNotice,
} from './conversations.js';
import {
  ensureDirectHistory, failUnconfirmed, loadConversations, loadHistory,
} from './history.js';
import { updateStatus } from './message-list.js';
import { confirmItem, flushQueued, MAX_BODY } from './outbox.js';
import {
  renderConnection, renderHeader, renderMembers, showBanner, showError,
} from './render.js';
import * as socket from './socket.js';
import {
  me, roomConv, rooms, saveRooms, state,
} from './state.js';

export function sendJoin(conv) {
  const since = conv.skipSince ? null : lastMessageId(conv);
  const frame = { type: 'join', room: conv.id };
  if (since) frame.since = since;
  conv.joining = socket.send(frame);
}

// The id of the last room message shown, in the room's order (ids are opaque: never compared).
function lastMessageId(conv) {
  for (let i = conv.items.length - 1; i >= 0; i -= 1) {
    const it = conv.items[i];
    if (it.kind === 'message' && it.id) return it.id;
  }
  return null;
}

// What the page does when the socket opens (join every room, send what waited) and when it
// closes (rooms are left, sent messages unconfirmed); socket.js does the rest.
export function onSocketOpen() {
  for (const conv of rooms()) sendJoin(conv);
  for (const conv of state.convs.values()) {
    if (conv.type !== 'dm') continue;
    // What another tab of ours received while this one was away is in the history.
    if (conv.historyLoaded) loadHistory(conv);
    flushQueued(conv);
  }
  // Conversations started elsewhere (another tab, before a reload) join the list.
  loadConversations();
  if (!rooms().length) renderConnection('online', 'Connected');
}

export function onSocketClose() {
  for (const conv of rooms()) {
    if (conv.joined) insertItem(conv, { kind: 'system', event: 'disconnected', text: 'Connection lost' });
    conv.joined = false;
    conv.joining = false;
  }
  renderMembers();
  // Sent but never acknowledged: the server may or may not have them.
  for (const { conv, item } of state.pending.values()) {
    item.status = conv.type === 'room' ? 'unconfirmed' : 'failed';
    if (conv.type === 'dm') item.error = 'the connection dropped before the server confirmed it';
    updateStatus(item);
  }
  state.pending.clear();
}

function onJoined(frame) {
  const conv = roomConv(frame.room);
  if (!conv) return;
  const first = !conv.historyLoaded;
  if (conv.everJoined && !conv.joined) insertItem(conv, { kind: 'system', event: 'reconnected', text: 'Reconnected' });
  conv.joined = true;
  conv.everJoined = true;
  conv.joining = false;
  conv.skipSince = false;
  conv.forbiddenRetried = false;
  conv.members = new Map((frame.members || []).map((u) => [u.id, u]));
  if (me() && !conv.members.has(me().id)) conv.members.set(me().id, me());
  // v2: `members` names at most 100; `onlineCount` is how many there are.
  conv.onlineCount = Math.max(Number(frame.onlineCount) || 0, conv.members.size);
  refreshRoom(conv);
  socket.resetBackoff();
  renderConnection('online', 'Connected');
  renderMembers();
  // First time: the recent history. After a reconnect the `since` replay brings what was
  // missed; the history merge also covers the moment between that replay and live delivery.
  // What was typed meanwhile goes out after that, so it follows what it answers.
  loadHistory(conv).then((ok) => {
    if (ok && !first) failUnconfirmed(conv);
    if (state.convs.get(conv.key) === conv) flushQueued(conv);
  });
}

function onRoomMessage(frame) {
  const conv = roomConv(frame.room);
  if (!conv || conv.ids.has(frame.id)) return;
  if (me() && frame.from.id === me().id) {
    const lost = conv.items.find((it) => it.mine && it.status === 'unconfirmed' && it.body === frame.body);
    if (lost) {
      confirmItem(conv, lost, frame.id, frame.ts);
      return;
    }
  }
  insertItem(conv, messageItem(frame));
}

function onDirect(frame) {
  const mine = me() && frame.from.id === me().id;
  const peer = mine ? lookupUser(frame.to) : frame.from;
  const conv = dmConv(peer);
  if (!conv.ids.has(frame.id)) insertItem(conv, messageItem(frame));
  ensureDirectHistory(conv);
}

// A user's "left" line waits this long: if they join again meanwhile (a reload, a reconnect
// to another instance after a drain) neither line is shown, so reloads do not flood the room.
const LEAVE_GRACE_MS = 3000;

function onSystem(frame) {
  const conv = roomConv(frame.room);
  if (!conv || !frame.user) return;
  if (me() && frame.user.id === me().id) return;
  conv.pendingLeaves ??= new Map();
  const pending = conv.pendingLeaves.get(frame.user.id);
  if (frame.event === 'user_joined') {
    if (!conv.members.has(frame.user.id)) conv.onlineCount += 1;
    conv.members.set(frame.user.id, frame.user);
    if (pending) {
      // Back within the grace: the leave and this join show as nothing.
      clearTimeout(pending);
      conv.pendingLeaves.delete(frame.user.id);
    } else {
      insertItem(conv, { kind: 'system', event: 'joined', text: `${frame.user.name} joined`, ts: frame.ts });
    }
    refreshRoom(conv); // perhaps a new member: the count changes
  } else if (frame.event === 'user_left') {
    conv.onlineCount = Math.max(conv.onlineCount - 1, conv.members.size - 1, 0);
    conv.members.delete(frame.user.id);
    if (pending) clearTimeout(pending);
    const item = { kind: 'system', event: 'left', text: `${frame.user.name} left`, ts: frame.ts };
    conv.pendingLeaves.set(frame.user.id, setTimeout(() => {
      conv.pendingLeaves.delete(frame.user.id);
      insertItem(conv, item);
    }, LEAVE_GRACE_MS));
  } else {
    return;
  }
  if (state.lastRoom === conv.key) renderMembers();
}

function onAck(frame) {
  const entry = frame.clientMsgId && state.pending.get(frame.clientMsgId);
  if (!entry) return;
  state.pending.delete(frame.clientMsgId);
  confirmItem(entry.conv, entry.item, frame.id, frame.ts, frame.held === true);
}

const ERROR_TEXT = {
  recipient_offline: 'they are not online right now',
  inbox_full: 'they are offline with too many messages waiting; try again later',
  rate_limited: 'too many messages at once; wait a moment',
  body_too_large: `longer than ${MAX_BODY} characters`,
  empty_body: 'the message is empty',
  not_in_room: 'not in this room (rejoining)',
  unavailable: 'the chat server is having trouble; try again',
  forbidden: 'not allowed',
  unauthorized: 'your session is no longer valid (renewing it)',
};

// What a failed message says: the server's reason, in words, with its code.
function failureText(conv, code) {
  if (code === 'forbidden' && conv.type === 'dm') {
    return 'direct messages go to users who share a room with you (forbidden)';
  }
  return `${ERROR_TEXT[code] || code} (${code})`;
}

function onErrorFrame(frame, req) {
  const text = `${frame.code}: ${frame.message}`;
  const entry = frame.clientMsgId && state.pending.get(frame.clientMsgId);
  if (entry) {
    state.pending.delete(frame.clientMsgId);
    entry.item.status = 'failed';
    entry.item.error = failureText(entry.conv, frame.code);
    updateStatus(entry.item);
    showError(text);
    if (frame.code === 'not_in_room' && entry.conv.type === 'room' && socket.isOpen()) sendJoin(entry.conv);
    return;
  }
  if (req && req.type === 'join') {
    const conv = roomConv(req.room);
    if (conv) return onJoinError(conv, frame, req);
  }
  showError(text);
}

async function onJoinError(conv, frame, req) {
  conv.joining = false;
  if (req.since && !['forbidden', 'room_not_found', 'rate_limited'].includes(frame.code)) {
    // The server could not replay from our last id (e.g. it no longer knows it): join
    // without `since`; the history reload after `joined` fills the gap.
    console.warn(`roomcast: join with since=${req.since} failed (${frame.code}: ${frame.message}); joining without it`);
    conv.skipSince = true;
    if (socket.isOpen()) sendJoin(conv);
    return undefined;
  }
  if (frame.code === 'forbidden' && !conv.forbiddenRetried && state.identity) {
    // Not (or no longer) a member: join through REST again, then retry once.
    conv.forbiddenRetried = true;
    try {
      await api.joinRoom(conv.id, conv.invite && conv.invite.code);
      if (socket.isOpen() && state.convs.get(conv.key) === conv) sendJoin(conv);
      return;
    } catch (err) {
      if (err.status === 404) return roomGone(conv);
      showError(`Could not rejoin ${conv.name}: ${api.describeError(err)}`);
      return;
    }
  }
  if (frame.code === 'room_not_found') return roomGone(conv);
  showError(`Could not join ${conv.name}: ${frame.code}: ${frame.message}`);
  if (frame.code === 'unavailable' || frame.code === 'rate_limited') {
    // Over the join limit the server says how long to wait (`retryAfterMs`).
    const wait = frame.code === 'rate_limited' && frame.retryAfterMs > 0 ? frame.retryAfterMs : 2000;
    setTimeout(() => {
      if (socket.isOpen() && state.convs.get(conv.key) === conv && !conv.joined) sendJoin(conv);
    }, wait);
  }
}

// What a resync's reason means for the reader.
const RESYNC_NOTICES = {
  replay_truncated: 'More was said while you were away than could be replayed; recent messages were reloaded.',
  replay_overflow: 'More was said while you were away than could be replayed; recent messages were reloaded.',
};

// Messages may have been missed (the server's broker reconnected, or a rejoin's replay could
// not cover the time away): reload each room's history and who is online, and say so.
function onResync(frame) {
  const notice = RESYNC_NOTICES[frame.reason]
    || 'The chat server briefly lost its connection to the other servers; recent messages were reloaded.';
  for (const conv of state.convs.values()) if (conv.type === 'dm' && conv.historyLoaded) loadHistory(conv);
  for (const conv of rooms()) {
    loadHistory(conv);
    refreshRoom(conv, { online: true });
    systemNotice(conv, notice, 'resync-notice');
  }
  showBanner(`Reloaded recent messages (${frame.reason || 'resync'}).`, 'info');
}

// The room's details over REST: its name, visibility and member count, and (after a resync)
// who is online among the first 100 members it names.
async function refreshRoom(conv, { online = false } = {}) {
  let info;
  try {
    info = await api.getRoom(conv.id);
  } catch {
    return; /* keep what we have */
  }
  if (state.convs.get(conv.key) !== conv) return;
  conv.memberCount = Number(info.memberCount) || 0;
  if (info.visibility && info.visibility !== conv.visibility) {
    conv.visibility = info.visibility;
    saveRooms();
    if (state.active === conv.key) renderHeader(conv);
  }
  if (online) {
    conv.members = new Map((info.members || []).filter((u) => u.online).map((u) => [u.id, { id: u.id, name: u.name }]));
    if (me() && conv.joined) conv.members.set(me().id, me());
    const all = (info.members || []).length >= conv.memberCount;
    conv.onlineCount = all ? conv.members.size : Math.max(conv.onlineCount, conv.members.size);
  }
  if (state.lastRoom === conv.key) renderMembers();
}

/** The handler of each server frame type (`left` needs none: socket.js takes its request). */
export const handlers = {
  joined: onJoined,
  message: onRoomMessage,
  direct: onDirect,
  system: onSystem,
  ack: onAck,
  error: onErrorFrame,
  resync: onResync,
};
