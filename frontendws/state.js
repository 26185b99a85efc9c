// What the page shows and remembers: who the user is, the conversations (rooms and private
// chats, with their messages and who is online in them), which one is on screen, and the
// messages sent but not yet confirmed. The connection's own machinery (the socket, retry
// timers, requests in flight) is socket.js's; nothing here touches the DOM.

import { KEYS, storage } from './storage.js';

export const state = {
  name: storage.get(KEYS.name, ''),
  identity: storage.get(KEYS.identity, null), // {token, websocketUrl, user: {id, name}}
  convs: new Map(), // key ("room:<id>" | "dm:<userId>") -> conversation (conversations.js)
  active: null, // key of the conversation shown
  lastRoom: null, // key of the last room shown (its members stay listed in a DM)
  pending: new Map(), // clientMsgId -> {conv, item}: sent, awaiting the server's ack or error
  invite: null, // the room id of the link the page was opened with, until it is joined
};

export const me = () => (state.identity ? state.identity.user : null);
export const token = () => (state.identity ? state.identity.token : null);
export const rooms = () => [...state.convs.values()].filter((c) => c.type === 'room');
export const roomConv = (roomId) => state.convs.get(`room:${roomId}`);
export const activeConv = () => state.convs.get(state.active);

export function saveIdentity(identity) {
  state.identity = identity;
  storage.set(KEYS.identity, identity);
}

export function saveName(name) {
  state.name = name;
  storage.set(KEYS.name, name);
}

export function saveRooms() {
  storage.set(KEYS.rooms, rooms().map((c) => ({ id: c.id, name: c.name })));
}

/** The rooms of the last visit: `[{id, name}]` (whatever was stored: check it). */
export const savedRooms = () => storage.get(KEYS.rooms, []);
