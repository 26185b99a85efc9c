// Who the user is and which rooms they are in: the display name, the guest identity (and its
// renewal when the server no longer accepts it), joining, creating and leaving rooms, signing
// out, and the invitation a room link shows in the lobby.

import * as api from './api.js';
import { $ } from './dom.js';
import { shortId } from './format.js';
import {
  activate, forgetAll, makeConv, removeConv, roomGone,
} from './conversations.js';
import { sendJoin } from './live.js';
import {
  renderConvList, renderMe, showBanner, showChat, showError, showLobby,
} from './render.js';
import * as socket from './socket.js';
import {
  roomConv, rooms, saveIdentity, saveName, saveRooms, state, token,
} from './state.js';

export function setIdentity(identity) {
  saveIdentity(identity);
  renderMe();
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

export async function joinRoom(roomId) {
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

export async function createRoom(roomName) {
  chosenName();
  const room = await api.createRoom(roomName);
  return joinRoom(room.roomId);
}

export function leaveRoom(conv) {
  if (socket.isOpen() && conv.joined) socket.send({ type: 'leave', room: conv.id });
  removeConv(conv);
}

export function signOut() {
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

// The WebSocket keeps failing to open while the server answers: perhaps our token is no
// longer accepted (e.g. the server restarted with another secret) or the room is gone.
export async function checkIdentity() {
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

export async function showInvite(roomId) {
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
