// The conversations (rooms and private chats) and their items: creating, showing and removing
// a conversation, and putting items (messages, system lines, notices) into its list in order.
// A conversation:
//   {key, type: 'room' | 'dm', id, name, items (in order), ids (message id -> item),
//    members (room: who is online, at most the first 100), onlineCount, memberCount,
//    visibility ('public' | 'private' | null: unknown), invite ({code, expiresAt}: to share a
//    private room, or the one it was joined with), joined, joining, everJoined, skipSince,
//    historyLoaded, nextBefore, forbiddenRetried, unread, listEl, olderEl}

import { refreshDirectory } from './directory.js';
import { $ } from './dom.js';
import { shortId } from './format.js';
import {
  createList, isAtBottom, renderItem, scrollToBottom,
} from './message-list.js';
import {
  renderConvList, renderHeader, renderMembers, showError, showLobby,
} from './render.js';
import * as socket from './socket.js';
import {
  me, reopenDm, rooms, saveRooms, state,
} from './state.js';

export function makeConv(type, id, name) {
  const key = `${type}:${id}`;
  const conv = {
    key, type, id, name,
    items: [],
    ids: new Map(), // message id -> item
    members: new Map(), // room: online users (the first 100 the server names)
    onlineCount: 0,
    memberCount: 0,
    visibility: null,
    invite: null,
    joined: false,
    joining: false,
    historyLoaded: false,
    nextBefore: null,
    forbiddenRetried: false,
    unread: 0,
    listEl: null,
    olderEl: null,
  };
  const list = createList(conv);
  conv.listEl = list;
  list.addEventListener('scroll', () => {
    if (isAtBottom(list) && conv.key === state.active) clearUnread(conv);
  });
  $('lists').append(list);
  state.convs.set(key, conv);
  renderConvList();
  return conv;
}

export function dmConv(user) {
  let conv = state.convs.get(`dm:${user.id}`);
  if (!conv) {
    reopenDm(user.id);
    conv = makeConv('dm', user.id, user.name || shortId(user.id));
  }
  else if (user.name && conv.name !== user.name) {
    conv.name = user.name;
    renderConvList();
  }
  return conv;
}

export function lookupUser(userId) {
  for (const c of rooms()) {
    const u = c.members.get(userId);
    if (u) return u;
  }
  const dm = state.convs.get(`dm:${userId}`);
  return { id: userId, name: dm ? dm.name : shortId(userId) };
}

export function removeConv(conv) {
  state.convs.delete(conv.key);
  conv.listEl.remove();
  for (const [cid, p] of state.pending) if (p.conv === conv) state.pending.delete(cid);
  if (state.lastRoom === conv.key) state.lastRoom = null;
  if (state.active === conv.key) {
    state.active = null;
    const next = rooms()[0] || [...state.convs.values()][0];
    if (next) activate(next);
  }
  if (conv.type === 'room') saveRooms();
  renderConvList();
  if (!rooms().length) {
    // No room left: nothing to be connected for.
    forgetAll();
    socket.close();
    showLobby();
    refreshDirectory();
  }
}

// Forgets every conversation (no room left, or signing out).
export function forgetAll() {
  for (const c of [...state.convs.values()]) {
    state.convs.delete(c.key);
    c.listEl.remove();
  }
  state.active = null;
  state.lastRoom = null;
}

export function roomGone(conv) {
  showError(`The room "${conv.name}" no longer exists, or you are no longer a member.`);
  removeConv(conv);
}

export function activate(conv) {
  state.active = conv.key;
  if (conv.type === 'room') state.lastRoom = conv.key;
  for (const c of state.convs.values()) c.listEl.hidden = c !== conv;
  renderHeader(conv);
  renderConvList();
  renderMembers();
  scrollToBottom(conv);
  clearUnread(conv);
}

export function clearUnread(conv) {
  if (!conv.unread) return;
  conv.unread = 0;
  renderConvList();
}

// Inserts an item before `beforeItem` (or at the end) in the conversation's order.
export function insertItem(conv, item, beforeItem = null) {
  const stick = isAtBottom(conv.listEl) || item.mine;
  item.el = renderItem(conv, item);
  if (beforeItem) {
    conv.items.splice(conv.items.indexOf(beforeItem), 0, item);
    conv.listEl.insertBefore(item.el, beforeItem.el);
  } else {
    conv.items.push(item);
    conv.listEl.append(item.el);
  }
  if (item.id) conv.ids.set(item.id, item);
  const visible = conv.key === state.active && !document.hidden;
  if (visible && stick) scrollToBottom(conv);
  if ((item.kind === 'message') && !item.mine && !item.fromHistory && !(visible && stick)) {
    conv.unread += 1;
    renderConvList();
  }
}

export function removeItem(conv, item) {
  const i = conv.items.indexOf(item);
  if (i >= 0) conv.items.splice(i, 1);
  if (item.id && conv.ids.get(item.id) === item) conv.ids.delete(item.id);
  if (item.el) item.el.remove();
}

export function systemNotice(conv, text, testid = 'notice') {
  insertItem(conv, { kind: 'notice', text, testid });
}

export function messageItem(frame, extra = {}) {
  return {
    kind: 'message',
    id: frame.id,
    from: frame.from,
    body: frame.body,
    ts: frame.ts,
    mine: !!(me() && frame.from && frame.from.id === me().id),
    status: 'sent',
    ...extra,
  };
}
