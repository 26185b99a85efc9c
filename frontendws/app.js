// roomcast browser client: plain JavaScript, no build step, nothing loaded from elsewhere.
//
// Talks to the chat API of contract v1 (shared CONTRACT.md): REST for rooms, membership and
// history, one WebSocket for everything live. Every body is rendered with textContent, never
// as HTML. Loaded as an ES module (strict, deferred like the `defer` script it was).

import * as api from './api.js';
import { $ } from './dom.js';
import { shortId } from './format.js';
import * as socket from './socket.js';
import {
  isAtBottom, createList, renderItem, scrollToBottom, updateStatus,
} from './message-list.js';
import {
  hideBanner, renderConnection, renderConvList, renderHeader, renderMe, renderMembers,
  showBanner, showChat, showError, showLobby,
} from './render.js';
import {
  activeConv, me, roomConv, rooms, saveIdentity, saveName, saveRooms, savedRooms, state, token,
} from './state.js';

const MAX_BODY = 4000;

// ---------------------------------------------------------------- small helpers

function randomId() {
  if (window.crypto && crypto.getRandomValues) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

function setIdentity(identity) {
  saveIdentity(identity);
  renderMe();
}

// ---------------------------------------------------------------- conversations

function makeConv(type, id, name) {
  const key = `${type}:${id}`;
  const conv = {
    key, type, id, name,
    items: [],
    ids: new Map(), // message id -> item
    members: new Map(), // room: online users
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

function dmConv(user) {
  let conv = state.convs.get(`dm:${user.id}`);
  if (!conv) conv = makeConv('dm', user.id, user.name || shortId(user.id));
  else if (user.name && conv.name !== user.name) {
    conv.name = user.name;
    renderConvList();
  }
  return conv;
}

function lookupUser(userId) {
  for (const c of rooms()) {
    const u = c.members.get(userId);
    if (u) return u;
  }
  const dm = state.convs.get(`dm:${userId}`);
  return { id: userId, name: dm ? dm.name : shortId(userId) };
}

function removeConv(conv) {
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
  }
}

// Forgets every conversation (no room left, or signing out).
function forgetAll() {
  for (const c of [...state.convs.values()]) {
    state.convs.delete(c.key);
    c.listEl.remove();
  }
  state.active = null;
  state.lastRoom = null;
}

function activate(conv) {
  state.active = conv.key;
  if (conv.type === 'room') state.lastRoom = conv.key;
  for (const c of state.convs.values()) c.listEl.hidden = c !== conv;
  renderHeader(conv);
  renderConvList();
  renderMembers();
  scrollToBottom(conv);
  clearUnread(conv);
}

function clearUnread(conv) {
  if (!conv.unread) return;
  conv.unread = 0;
  renderConvList();
}

// Inserts an item before `beforeItem` (or at the end) in the conversation's order.
function insertItem(conv, item, beforeItem = null) {
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

function removeItem(conv, item) {
  const i = conv.items.indexOf(item);
  if (i >= 0) conv.items.splice(i, 1);
  if (item.id && conv.ids.get(item.id) === item) conv.ids.delete(item.id);
  if (item.el) item.el.remove();
}

function systemNotice(conv, text, testid = 'notice') {
  insertItem(conv, { kind: 'notice', text, testid });
}

function messageItem(frame, extra = {}) {
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

// ---------------------------------------------------------------- history

// Merges a page of history (oldest first) into the room: messages already shown are kept
// where they are; a missing one goes just before the next one that is shown (or at the end),
// so the room's order holds without comparing ids.
function mergeHistory(conv, messages) {
  let before = null;
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    const m = messages[i];
    if (!m || m.type !== 'message') continue;
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

async function loadHistory(conv) {
  let page;
  try {
    page = await api.getMessages(conv.id);
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

async function loadOlder(conv) {
  if (!conv.nextBefore) return;
  let page;
  try {
    page = await api.getMessages(conv.id, conv.nextBefore);
  } catch (err) {
    showError(`Could not load older messages: ${api.describeError(err)}`);
    return;
  }
  const list = conv.listEl;
  const fromBottom = list.scrollHeight - list.scrollTop;
  const first = conv.items[0] || null;
  for (const m of page.messages || []) {
    if (!m || m.type !== 'message' || conv.ids.has(m.id)) continue;
    insertItem(conv, messageItem(m, { fromHistory: true }), first);
  }
  conv.nextBefore = page.nextBefore || null;
  conv.olderEl.hidden = !conv.nextBefore;
  list.scrollTop = list.scrollHeight - fromBottom;
}

// After a reconnect: what the server confirmed was merged; the rest was lost.
function failUnconfirmed(conv) {
  for (const item of conv.items) {
    if (item.mine && item.status === 'unconfirmed') {
      item.status = 'failed';
      item.error = 'the connection dropped before the server confirmed it';
      updateStatus(item);
    }
  }
}

// ---------------------------------------------------------------- sending

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
  item.clientMsgId = randomId();
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

function flushQueued(conv) {
  if (!canSend(conv)) return;
  for (const item of conv.items) if (item.mine && item.status === 'queued') transmit(conv, item);
}

function send(conv, body) {
  const item = {
    kind: 'message', mine: true, from: me(), body, ts: Date.now(), status: 'queued',
  };
  insertItem(conv, item);
  if (canSend(conv)) transmit(conv, item);
}

function retryItem(item) {
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

function confirmItem(conv, item, id, ts) {
  const dup = conv.ids.get(id);
  if (dup && dup !== item) removeItem(conv, dup); // history raced the ack
  item.id = id;
  if (ts) item.ts = ts;
  item.status = 'sent';
  item.error = null;
  conv.ids.set(id, item);
  updateStatus(item);
}

function sendJoin(conv) {
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

// ---------------------------------------------------------------- the WebSocket

// What the page does when the socket opens (join every room, send what waited) and when it
// closes (rooms are left, sent messages unconfirmed); socket.js does the rest.
function onSocketOpen() {
  for (const conv of rooms()) sendJoin(conv);
  for (const conv of state.convs.values()) if (conv.type === 'dm') flushQueued(conv);
  if (!rooms().length) renderConnection('online', 'Connected');
}

function onSocketClose() {
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

// The WebSocket keeps failing to open while the server answers: perhaps our token is no
// longer accepted (e.g. the server restarted with another secret) or the room is gone.
async function checkIdentity() {
  const conv = rooms()[0];
  if (!conv || !state.identity) return;
  try {
    await api.joinRoom(conv.id, state.identity.user.name, state.identity.token);
  } catch (err) {
    if (err.status === 401) await renewIdentity();
    else if (err.status === 404) roomGone(conv);
  }
}

async function renewIdentity() {
  const name = state.identity ? state.identity.user.name : state.name;
  setIdentity(null);
  for (const conv of rooms()) {
    try {
      const res = await api.joinRoom(conv.id, name, token());
      if (!state.identity) setIdentity({ token: res.token, websocketUrl: res.websocketUrl, user: res.user });
    } catch (err) {
      if (err.status === 404) roomGone(conv);
    }
  }
  if (state.identity) showBanner('Your session had expired: you are back in your rooms under a new session.', 'info');
}

// ---------------------------------------------------------------- frames from the server

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
  if (conv.ids.has(frame.id)) return;
  insertItem(conv, messageItem(frame));
}

function onSystem(frame) {
  const conv = roomConv(frame.room);
  if (!conv || !frame.user) return;
  if (me() && frame.user.id === me().id) return;
  if (frame.event === 'user_joined') {
    conv.members.set(frame.user.id, frame.user);
    insertItem(conv, { kind: 'system', event: 'joined', text: `${frame.user.name} joined`, ts: frame.ts });
  } else if (frame.event === 'user_left') {
    conv.members.delete(frame.user.id);
    insertItem(conv, { kind: 'system', event: 'left', text: `${frame.user.name} left`, ts: frame.ts });
  } else {
    return;
  }
  if (state.lastRoom === conv.key) renderMembers();
}

function onAck(frame) {
  const entry = frame.clientMsgId && state.pending.get(frame.clientMsgId);
  if (!entry) return;
  state.pending.delete(frame.clientMsgId);
  confirmItem(entry.conv, entry.item, frame.id, frame.ts);
}

const ERROR_TEXT = {
  recipient_offline: 'they are not online right now',
  rate_limited: 'too many messages at once; wait a moment',
  body_too_large: `longer than ${MAX_BODY} characters`,
  empty_body: 'the message is empty',
  not_in_room: 'not in this room (rejoining)',
  unavailable: 'the chat server is having trouble; try again',
  forbidden: 'not allowed',
};

function onErrorFrame(frame, req) {
  const text = `${frame.code}: ${frame.message}`;
  const entry = frame.clientMsgId && state.pending.get(frame.clientMsgId);
  if (entry) {
    state.pending.delete(frame.clientMsgId);
    entry.item.status = 'failed';
    entry.item.error = `${ERROR_TEXT[frame.code] || frame.code} (${frame.code})`;
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
      await api.joinRoom(conv.id, state.identity.user.name, state.identity.token);
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
    setTimeout(() => {
      if (socket.isOpen() && state.convs.get(conv.key) === conv && !conv.joined) sendJoin(conv);
    }, 2000);
  }
}

function roomGone(conv) {
  showError(`The room "${conv.name}" no longer exists on the server.`);
  removeConv(conv);
}

// The server may have missed messages (its broker reconnected): reload each room's history
// and who is online, and say so.
function onResync(frame) {
  for (const conv of rooms()) {
    loadHistory(conv);
    refreshMembers(conv);
    systemNotice(conv, 'The chat server briefly lost its connection to the other servers; recent messages were reloaded.', 'resync-notice');
  }
  showBanner(`Reloaded recent messages (${frame.reason || 'resync'}).`, 'info');
}

async function refreshMembers(conv) {
  try {
    const info = await api.getRoom(conv.id);
    conv.members = new Map((info.members || []).filter((u) => u.online).map((u) => [u.id, { id: u.id, name: u.name }]));
    if (me() && conv.joined) conv.members.set(me().id, me());
    if (state.lastRoom === conv.key) renderMembers();
  } catch {
    /* keep what we have */
  }
}

// ---------------------------------------------------------------- joining and creating

function parseRoomInput(text) {
  const value = text.trim();
  if (!value) return '';
  try {
    const url = new URL(value);
    const room = url.searchParams.get('room');
    if (room) return room;
  } catch {
    /* not a link: an id */
  }
  const m = value.match(/[?&]room=([^&#]+)/);
  return m ? decodeURIComponent(m[1]) : value;
}

function chosenName() {
  if (state.identity) return state.identity.user.name;
  const input = $('name-input');
  const name = input.value.trim();
  if (!name || name.length > 32) {
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    throw new Error('Pick a display name first (1 to 32 characters).');
  }
  input.removeAttribute('aria-invalid');
  saveName(name);
  return name;
}

async function joinRoom(roomId) {
  const existing = roomConv(roomId);
  if (existing) {
    showChat();
    activate(existing);
    return existing;
  }
  const name = chosenName();
  let res;
  try {
    res = await api.joinRoom(roomId, name, token());
  } catch (err) {
    if (err.status === 401 && state.identity && !rooms().length) {
      setIdentity(null); // a stale session: start a new one
      res = await api.joinRoom(roomId, name);
    } else {
      if (err.status === 404) throw new api.ApiError(404, `No room with id "${roomId}": ${err.message}`);
      throw err;
    }
  }
  if (!state.identity || state.identity.user.id !== res.user.id) {
    setIdentity({ token: res.token, websocketUrl: res.websocketUrl, user: res.user });
  }
  let roomName = shortId(roomId);
  try {
    const info = await api.getRoom(roomId);
    if (info && info.name) roomName = info.name;
  } catch {
    /* the name is cosmetic */
  }
  const conv = roomConv(roomId) || makeConv('room', roomId, roomName);
  saveRooms();
  showChat();
  activate(conv);
  if (socket.isOpen()) sendJoin(conv);
  else socket.ensure();
  return conv;
}

async function createRoom(roomName) {
  chosenName();
  const room = await api.createRoom(roomName);
  return joinRoom(room.roomId);
}

function leaveRoom(conv) {
  if (socket.isOpen() && conv.joined) socket.send({ type: 'leave', room: conv.id });
  removeConv(conv);
}

function signOut() {
  for (const conv of [...state.convs.values()]) {
    if (conv.type === 'room' && socket.isOpen() && conv.joined) socket.send({ type: 'leave', room: conv.id });
  }
  forgetAll();
  socket.close();
  setIdentity(null);
  saveRooms();
  renderConvList();
  showLobby();
}

// ---------------------------------------------------------------- views

async function showInvite(roomId) {
  state.invite = roomId;
  $('invite').hidden = false;
  $('invite-room').textContent = shortId(roomId);
  try {
    const info = await api.getRoom(roomId);
    $('invite-room').textContent = info.name;
  } catch (err) {
    if (err.status === 404) {
      $('invite').hidden = true;
      state.invite = null;
      showError(`The link points to a room that does not exist (${err.message}).`);
    }
  }
}

// Runs an async UI action: buttons disabled meanwhile, failures shown in the banner.
async function busy(form, fn) {
  const controls = form ? [...form.querySelectorAll('button, input')] : [];
  for (const c of controls) c.disabled = true;
  try {
    await fn();
    hideBanner();
    return true;
  } catch (err) {
    showError(api.describeError(err));
    return false;
  } finally {
    for (const c of controls) c.disabled = false;
  }
}

// ---------------------------------------------------------------- wiring

function autosize(textarea) {
  if (!textarea.value) {
    textarea.style.height = '';
    return;
  }
  textarea.style.height = 'auto';
  textarea.style.height = `${Math.min(textarea.scrollHeight, 160)}px`;
}

function updateCharCount() {
  const n = $('message-input').value.length;
  const counter = $('char-count');
  counter.textContent = n > MAX_BODY - 500 ? `${n} / ${MAX_BODY}` : '';
  counter.classList.toggle('over', n > MAX_BODY);
}

function submitComposer() {
  const input = $('message-input');
  const conv = activeConv();
  const body = input.value;
  if (!conv || !body.trim()) return;
  if ([...body].length > MAX_BODY) {
    showError(`A message can be at most ${MAX_BODY} characters.`);
    return;
  }
  send(conv, body);
  input.value = '';
  autosize(input);
  updateCharCount();
  input.focus();
}

function wire() {
  $('banner').querySelector('.banner-close').addEventListener('click', hideBanner);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !$('banner').hidden) hideBanner();
  });
  $('retry-now').addEventListener('click', socket.retryNow);
  $('sign-out').addEventListener('click', signOut);

  const nameInput = $('name-input');
  nameInput.value = state.name || (state.identity ? state.identity.user.name : '');
  nameInput.addEventListener('input', () => nameInput.removeAttribute('aria-invalid'));
  nameInput.addEventListener('change', () => {
    const name = nameInput.value.trim();
    if (state.identity && state.identity.user.name !== name && !rooms().length) {
      setIdentity(null); // a new name is a new guest user
    }
  });
  nameInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.isComposing) {
      e.preventDefault();
      if (state.invite) $('join-invite').click();
      else $('create-name').focus();
    }
  });

  $('join-invite').addEventListener('click', () => {
    if (!state.invite) return;
    busy($('invite'), async () => {
      await joinRoom(state.invite);
      state.invite = null;
      $('invite').hidden = true;
    });
  });

  const onCreate = (form, input) => (e) => {
    e.preventDefault();
    busy(form, async () => {
      await createRoom(input.value.trim());
      input.value = '';
      $('add-room').open = false;
      $('message-input').focus();
    });
  };
  const onJoin = (form, input) => (e) => {
    e.preventDefault();
    const id = parseRoomInput(input.value);
    if (!id) {
      showError('Enter a room id or a room link.');
      input.focus();
      return;
    }
    busy(form, async () => {
      await joinRoom(id);
      input.value = '';
      $('add-room').open = false;
      $('message-input').focus();
    });
  };
  $('create-form').addEventListener('submit', onCreate($('create-form'), $('create-name')));
  $('join-form').addEventListener('submit', onJoin($('join-form'), $('join-id')));
  $('sb-create-form').addEventListener('submit', onCreate($('sb-create-form'), $('sb-create-name')));
  $('sb-join-form').addEventListener('submit', onJoin($('sb-join-form'), $('sb-join-id')));

  $('copy-link').addEventListener('click', async () => {
    const input = $('share-link');
    let ok = false;
    try {
      await navigator.clipboard.writeText(input.value);
      ok = true;
    } catch {
      input.select();
      try {
        ok = document.execCommand('copy');
      } catch {
        ok = false;
      }
    }
    $('copy-link').textContent = ok ? 'Copied' : 'Select and copy';
    setTimeout(() => { $('copy-link').textContent = 'Copy link'; }, 1500);
  });
  $('share-link').addEventListener('focus', (e) => e.target.select());
  $('leave-room').addEventListener('click', () => {
    const conv = activeConv();
    if (conv && conv.type === 'room') leaveRoom(conv);
  });
  $('close-dm').addEventListener('click', () => {
    const conv = activeConv();
    if (conv && conv.type === 'dm') removeConv(conv);
  });

  // The buttons of the conversation list, the member list and the message lists are rendered
  // without handlers: their clicks are handled here, one listener for each list.
  $('conv-list').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-conv]');
    const conv = button && state.convs.get(button.dataset.conv);
    if (conv) activate(conv);
  });
  $('member-list').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-user-id]');
    if (button) activate(dmConv({ id: button.dataset.userId, name: button.dataset.name }));
  });
  $('lists').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-action]');
    const list = button && button.closest('ol[data-conv]');
    const conv = list && state.convs.get(list.dataset.conv);
    if (!conv) return;
    if (button.dataset.action === 'load-older') loadOlder(conv);
    else if (button.dataset.action === 'retry') {
      const item = conv.items.find((it) => it.el && it.el.contains(button));
      if (item) retryItem(item);
    }
  });

  const input = $('message-input');
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submitComposer();
    }
  });
  input.addEventListener('input', () => {
    autosize(input);
    updateCharCount();
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    submitComposer();
  });

  document.addEventListener('visibilitychange', () => {
    const conv = activeConv();
    if (!document.hidden && conv && isAtBottom(conv.listEl)) clearUnread(conv);
  });
}

function init() {
  socket.setup({
    url: () => state.identity.websocketUrl,
    wanted: () => !!state.identity && rooms().length > 0,
    onStatus: renderConnection,
    onOpen: onSocketOpen,
    onClose: onSocketClose,
    onOpenError: (err) => showError(`Cannot open the connection: ${api.describeError(err)}`),
    beforeRetry: checkIdentity,
    handlers: {
      joined: onJoined,
      message: onRoomMessage,
      direct: onDirect,
      system: onSystem,
      ack: onAck,
      error: onErrorFrame,
      resync: onResync,
    },
  });
  wire();
  const invite = new URLSearchParams(location.search).get('room');
  const saved = state.identity ? savedRooms() : [];
  if (state.identity && Array.isArray(saved) && saved.length) {
    // Back in the rooms of the last visit.
    for (const r of saved) if (r && r.id && !roomConv(r.id)) makeConv('room', r.id, r.name || shortId(r.id));
    showChat();
    activate((invite && roomConv(invite)) || rooms()[0]);
    socket.ensure();
    if (invite && !roomConv(invite)) joinRoom(invite).catch((err) => showError(api.describeError(err)));
    return;
  }
  showLobby();
  if (invite) {
    showInvite(invite);
    if ($('name-input').value) $('join-invite').focus();
    else $('name-input').focus();
  } else {
    $('name-input').focus();
  }
}

// For tests and debugging: a read-only view of the connection.
window.roomcast = Object.freeze({
  get connected() { return socket.isOpen(); },
  get user() { return me(); },
});

init();
