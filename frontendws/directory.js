// The lobby's list of rooms (`GET /rooms`, newest first, a page at a time): the public rooms
// and the user's private ones, each with a Join button, and "More rooms" while the server has
// another page. It needs an identity: without one it says how to get the list. Join buttons
// carry a data-room-id and no handler: main.js handles their clicks.

import * as api from './api.js';
import { $, el } from './dom.js';
import { showError } from './render.js';
import { state } from './state.js';

let generation = 0; // a newer load makes the answers of older ones stale

export function resetDirectory() {
  generation += 1;
  state.directory = { rooms: [], nextCursor: null, loaded: false };
  renderDirectory();
}

/** Loads the first page again (when the user has an identity; otherwise only redraws). */
export async function refreshDirectory() {
  if (!state.identity) {
    resetDirectory();
    return;
  }
  const mine = ++generation;
  let page;
  try {
    page = await api.listRooms();
  } catch (err) {
    if (mine === generation) showError(`Could not list the rooms: ${api.describeError(err)}`);
    return;
  }
  if (mine !== generation) return;
  state.directory = { rooms: page.rooms || [], nextCursor: page.nextCursor || null, loaded: true };
  renderDirectory();
}

/** Appends the next page. */
export async function moreRooms() {
  const { nextCursor } = state.directory;
  if (!nextCursor) return;
  const mine = generation;
  const page = await api.listRooms(nextCursor);
  if (mine !== generation) return;
  const known = new Set(state.directory.rooms.map((r) => r.roomId));
  const added = (page.rooms || []).filter((r) => !known.has(r.roomId));
  state.directory = {
    rooms: [...state.directory.rooms, ...added], nextCursor: page.nextCursor || null, loaded: true,
  };
  renderDirectory();
}

function roomItem(room) {
  const isPrivate = room.visibility === 'private';
  const online = Number(room.online) || 0;
  return el('li', { class: 'room-item', 'data-testid': 'room-item', 'data-room-id': room.roomId },
    el('span', { class: 'room-item-name', 'data-testid': 'room-item-name', text: room.name || room.roomId }),
    isPrivate ? el('span', { class: 'private-tag small', 'data-testid': 'room-item-private', text: 'private' }) : null,
    el('span', { class: 'room-item-online', text: `${online} online` }),
    el('button', {
      type: 'button', class: 'room-join', 'data-testid': 'room-join', 'data-room-id': room.roomId, title: `Join ${room.name || room.roomId}`,
    }, 'Join'));
}

export function renderDirectory() {
  const { rooms, nextCursor, loaded } = state.directory;
  const list = $('room-list');
  list.replaceChildren(...rooms.map(roomItem));
  const empty = $('rooms-empty');
  if (!state.identity) {
    empty.textContent = state.authMode === 'token'
      ? 'Paste your access token above to see the public rooms and your private ones.'
      : 'Enter your name and choose “Show rooms” to see the public rooms and your private ones.';
  } else {
    empty.textContent = loaded ? 'No rooms yet: create the first one.' : 'Loading the rooms…';
  }
  empty.hidden = rooms.length > 0;
  $('rooms-refresh').textContent = loaded ? 'Refresh' : 'Show rooms';
  $('rooms-more').hidden = !nextCursor;
}
