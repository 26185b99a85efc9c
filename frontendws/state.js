// What the page shows and remembers: who the user is, the conversations (rooms and private
// chats, with their messages and who is online in them), which one is on screen, and the
// messages sent but not yet confirmed. The connection's own machinery (the socket, retry
// timers, requests in flight) is socket.js's; nothing here touches the DOM.

import { KEYS, storage } from './storage.js';

export const state = {
  name: storage.get(KEYS.name, ''),
  // {kind: 'guest' | 'token', token, expiresAt (ms, or null), user: {id, name} | null,
  //  websocketUrl (from the last join-room, or absent)}
  identity: storage.get(KEYS.identity, null),
  authMode: 'guest', // until `POST /guests` answers 404 (or a pasted token is kept): then 'token'
  convs: new Map(), // key ("room:<id>" | "dm:<userId>") -> conversation (conversations.js)
  active: null, // key of the conversation shown
  lastRoom: null, // key of the last room shown (its members stay listed in a DM)
  pending: new Map(), // clientMsgId -> {conv, item}: sent, awaiting the server's ack or error
  invite: null, // {room, code} of the link the page was opened with, until it is joined
  directory: { rooms: [], nextCursor: null, loaded: false }, // the lobby's list of rooms
};

export const me = () => (state.identity ? state.identity.user : null);
export const token = () => (state.identity ? state.identity.token : null);
/** Whether the token is known to have expired (or expires within 30 s). */
export const tokenExpired = () => !!(state.identity && state.identity.expiresAt
  && state.identity.expiresAt - 30_000 < Date.now());
export const rooms = () => [...state.convs.values()].filter((c) => c.type === 'room');
export const roomConv = (roomId) => state.convs.get(`room:${roomId}`);
export const activeConv = () => state.convs.get(state.active);

export function saveIdentity(identity) {
  state.identity = identity;
  storage.set(KEYS.identity, identity);
}

// Not kept across visits: the next visit asks the server for a guest again, unless the
// stored identity is a pasted token.
if (state.identity && state.identity.kind === 'token') state.authMode = 'token';

export function saveAuthMode(mode) {
  state.authMode = mode;
}

export function saveName(name) {
  state.name = name;
  storage.set(KEYS.name, name);
}

// Private conversations closed by the user: other user's id -> the id of the last message
// shown when it was closed. The server's list of conversations brings one back only once a
// newer message is in it. At most CLOSED_KEPT, the oldest forgotten first.
const CLOSED_KEPT = 200;
const closed = new Map(Object.entries(storage.get(KEYS.closedDms, {}) || {}));

function saveClosed() {
  while (closed.size > CLOSED_KEPT) closed.delete(closed.keys().next().value);
  storage.set(KEYS.closedDms, closed.size ? Object.fromEntries(closed) : null);
}

/** Remembers that the conversation with `userId` was closed after message `lastId`. */
export function closeDm(userId, lastId) {
  closed.delete(userId);
  closed.set(userId, lastId || '');
  saveClosed();
}

/** Whether the conversation with `userId`, whose last message is `lastId`, stays closed. */
export function dmClosed(userId, lastId) {
  return closed.has(userId) && closed.get(userId) === (lastId || '');
}

/** The conversation with `userId` is shown again: forget that it was closed. */
export function reopenDm(userId) {
  if (closed.delete(userId)) saveClosed();
}

/** Forgets every closed conversation (signing out: they were another identity's). */
export function forgetClosedDms() {
  closed.clear();
  saveClosed();
}

export function saveRooms() {
  storage.set(KEYS.rooms, rooms().map((c) => ({
    id: c.id, name: c.name, visibility: c.visibility, invite: c.invite,
  })));
}

/** The rooms of the last visit: `[{id, name, visibility?, invite?}]` (whatever was stored: check it). */
export const savedRooms = () => storage.get(KEYS.rooms, []);
