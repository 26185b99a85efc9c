// Who the user is and which rooms they are in: the identity (a guest identity for the display
// name, or a pasted access token when the server has no guest mode) and its renewal, joining
// (with an invite for a private room), creating, sharing and leaving rooms, signing out, and
// the invitation a room link shows in the lobby.

import * as api from './api.js';
import {
  activate, forgetAll, makeConv, removeConv, roomGone,
} from './conversations.js';
import { refreshDirectory, resetDirectory } from './directory.js';
import { $ } from './dom.js';
import { shortId } from './format.js';
import { sendJoin } from './live.js';
import {
  renderAuthMode, renderConvList, renderHeader, renderMe, showBanner, showChat, showError, showLobby,
} from './render.js';
import * as socket from './socket.js';
import {
  forgetClosedDms, roomConv, rooms, saveAuthMode, saveIdentity, saveName, saveRooms, state, token,
  tokenExpired,
} from './state.js';

export const NOT_FOUND_TEXT = 'room not found or you need an invite';

export function setIdentity(identity) {
  saveIdentity(identity);
  renderMe();
}

function chosenName() {
  if (state.identity && state.identity.user) return state.identity.user.name;
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

// The claims of a JWT, when the token is one (only to show a name and know the expiry; the
// server alone checks it).
function jwtClaims(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
  } catch {
    return null;
  }
}

function askForToken(message) {
  saveAuthMode('token');
  renderAuthMode();
  showLobby();
  $('token-input').focus();
  throw new api.ApiError(401, message, 'unauthorized');
}

/** A new guest identity for the display name (or asks for a token when there is no guest mode). */
async function newGuest(name) {
  let res;
  try {
    res = await api.createGuest(name);
  } catch (err) {
    if (err.status === 404 || err.status === 405) {
      return askForToken('This server does not offer guest access: paste an access token in the lobby.');
    }
    throw err;
  }
  const expiresAt = Date.parse(res.expiresAt);
  setIdentity({
    kind: 'guest', token: res.token, expiresAt: Number.isNaN(expiresAt) ? null : expiresAt, user: res.user,
  });
  return state.identity;
}

/** The user's identity, getting one first if there is none (or it has expired). */
export async function ensureIdentity() {
  if (state.identity && !tokenExpired()) return state.identity;
  return renewIdentity();
}

/** Uses a pasted access token (token mode): checked with one call before it is kept. */
export async function useToken(raw) {
  const value = raw.trim().replace(/^Bearer\s+/i, '');
  if (!value) throw new Error('Paste an access token first.');
  const claims = jwtClaims(value) || {};
  const name = claims.name || claims.preferred_username || claims.sub;
  setIdentity({
    kind: 'token',
    token: value,
    expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : null,
    user: claims.sub ? { id: String(claims.sub), name: String(name) } : null,
  });
  try {
    await api.listRooms(null, 1, { renewal: false });
  } catch (err) {
    setIdentity(null);
    if (err.status === 401) throw new api.ApiError(401, `The server refused this token: ${err.message}`, err.code);
    throw err;
  }
}

/**
 * Gets a new identity: a new guest with the same display name, back in the user's rooms
 * (with the invites kept for the private ones); a refused access token is asked for again.
 * api.js calls this when the token has expired or a call answered 401.
 */
export async function renewIdentity() {
  const old = state.identity;
  if (state.authMode === 'token' || (old && old.kind === 'token')) {
    setIdentity(null);
    return askForToken(old
      ? 'Your access token was refused or has expired: paste a new one in the lobby.'
      : 'Paste an access token in the lobby first.');
  }
  const name = old && old.user ? old.user.name : chosenName();
  await newGuest(name);
  if (!old || !rooms().length) return state.identity;
  for (const conv of rooms()) {
    try {
      const res = await api.joinRoom(conv.id, inviteCode(conv), { renewal: false });
      state.identity.websocketUrl = res.websocketUrl;
      saveIdentity(state.identity);
    } catch (err) {
      if (err.status === 404) roomGone(conv);
    }
  }
  showBanner('Your session had expired: you are back in your rooms under a new session.', 'info');
  if (rooms().length) socket.restart();
  return state.identity;
}

function inviteCode(conv) {
  return conv.invite && conv.invite.code ? conv.invite.code : null;
}

export async function joinRoom(roomId, invite = null, known = null) {
  const existing = roomConv(roomId);
  if (existing) {
    showChat();
    activate(existing);
    return existing;
  }
  if (!state.identity && state.authMode !== 'token') chosenName(); // asked for before any request
  await ensureIdentity();
  let res;
  try {
    res = await api.joinRoom(roomId, invite);
  } catch (err) {
    if (err.status === 404) throw new api.ApiError(404, `Cannot join "${roomId}": ${NOT_FOUND_TEXT}.`, err.code);
    throw err;
  }
  const identity = { ...state.identity, websocketUrl: res.websocketUrl };
  if (res.user && (!identity.user || identity.user.id !== res.user.id)) identity.user = res.user;
  setIdentity(identity);
  // The room's name and visibility: known when we just created it; else asked for, twice at
  // most (a name that failed to load would stay the room's short id).
  let roomName = (known && known.name) || shortId(roomId);
  let visibility = (known && known.visibility) || null;
  for (let attempt = 0; !known && attempt < 2; attempt += 1) {
    try {
      const info = await api.getRoom(roomId);
      if (info && info.name) roomName = info.name;
      if (info && info.visibility) visibility = info.visibility;
      break;
    } catch {
      /* the name is cosmetic: keep the short id if it cannot be had */
    }
  }
  const conv = roomConv(roomId) || makeConv('room', roomId, roomName);
  conv.visibility = visibility;
  if (invite) conv.invite = { code: invite, expiresAt: null };
  saveRooms();
  showChat();
  activate(conv);
  showShareLink(conv);
  if (socket.isOpen()) sendJoin(conv);
  else socket.ensure();
  return conv;
}

export async function createRoom(roomName, visibility = 'public') {
  if (!state.identity && state.authMode !== 'token') chosenName();
  await ensureIdentity();
  const room = await api.createRoom(roomName, visibility);
  return joinRoom(room.roomId, null, { name: room.name, visibility: room.visibility });
}

/**
 * The invite code of a private room to share (a new one when there is none or it is about to
 * expire); null for a public room. Kept with the room, so that a renewed guest can rejoin.
 */
export async function shareInvite(conv) {
  if (conv.visibility !== 'private') return null;
  const fresh = conv.invite && conv.invite.code && conv.invite.expiresAt
    && conv.invite.expiresAt - 60_000 > Date.now();
  if (!fresh) {
    const res = await api.createInvite(conv.id);
    const expiresAt = Date.parse(res.expiresAt);
    conv.invite = { code: res.invite, expiresAt: Number.isNaN(expiresAt) ? null : expiresAt };
    saveRooms();
  }
  return conv.invite.code;
}

/** Shows the room's share link: for a private room, once its invite is there. */
export async function showShareLink(conv) {
  if (conv.visibility !== 'private') return;
  try {
    await shareInvite(conv);
    if (state.active === conv.key) renderHeader(conv);
  } catch (err) {
    showError(`Could not make an invite link for ${conv.name}: ${api.describeError(err)}`);
  }
}

/** Leaves a room for good: the live feed first (the others see it), then the membership. */
export async function leaveRoom(conv) {
  if (socket.isOpen() && conv.joined) socket.send({ type: 'leave', room: conv.id });
  try {
    await api.leaveRoom(conv.id);
  } catch (err) {
    if (err.status !== 404) showError(`Could not leave ${conv.name}: ${api.describeError(err)}`);
  }
  if (state.convs.get(conv.key) === conv) removeConv(conv);
  else refreshDirectory();
}

export function signOut() {
  for (const conv of [...state.convs.values()]) {
    if (conv.type === 'room' && socket.isOpen() && conv.joined) socket.send({ type: 'leave', room: conv.id });
  }
  forgetAll();
  forgetClosedDms();
  socket.close();
  setIdentity(null);
  saveRooms();
  resetDirectory();
  renderConvList();
  showLobby();
}

// The WebSocket keeps failing to open while the server answers: perhaps our token is no
// longer accepted (a 401 renews it on the way), or the room is gone.
export async function checkIdentity() {
  const conv = rooms()[0];
  if (!conv || !state.identity) return;
  try {
    await api.getRoom(conv.id);
  } catch (err) {
    if (err.status === 404) roomGone(conv);
  }
}

export async function showInvite(roomId, code) {
  state.invite = { room: roomId, code };
  $('invite').hidden = false;
  $('invite-room').textContent = code ? 'a private room' : `room ${shortId(roomId)}`;
  if (!token() || code) return; // the name needs an identity; a private room's, membership
  try {
    const info = await api.getRoom(roomId);
    $('invite-room').textContent = info.name;
  } catch (err) {
    if (err.status === 404) {
      $('invite').hidden = true;
      state.invite = null;
      showError(`Cannot open this link: ${NOT_FOUND_TEXT}.`);
    }
  }
}
