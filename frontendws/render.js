// Rendering of the page around the messages: the error banner, the connection status, the
// conversation list, the member list, the conversation header and which view (lobby or chat)
// is shown. It reads the state and never changes it; text always goes in as text. Buttons
// have no handlers here: main.js handles the clicks on the conversation and member lists.

import { apiBase } from './api.js';
import { $, el } from './dom.js';
import { me, state } from './state.js';

let bannerTimer = null;

export function showBanner(text, kind = 'error') {
  const banner = $('banner');
  banner.dataset.kind = kind;
  banner.querySelector('.banner-text').textContent = text;
  banner.hidden = false;
  clearTimeout(bannerTimer);
  if (kind === 'info') bannerTimer = setTimeout(() => { banner.hidden = true; }, 6000);
}

export const showError = (text) => showBanner(text, 'error');

export function hideBanner() {
  $('banner').hidden = true;
}

const CONNECTION_TEXT = { idle: 'Not connected', connecting: 'Connecting…', online: 'Connected', reconnecting: 'Reconnecting…' };

/** The connection status in the top bar: idle (hidden), connecting, online or reconnecting. */
export function renderConnection(kind, text) {
  const box = $('conn');
  box.hidden = kind === 'idle';
  box.dataset.state = kind;
  box.querySelector('.conn-text').textContent = text || CONNECTION_TEXT[kind];
  $('retry-now').hidden = kind !== 'reconnecting';
  document.body.dataset.conn = kind;
}

export function renderConvList() {
  const list = $('conv-list');
  list.replaceChildren();
  for (const conv of state.convs.values()) {
    const isActive = conv.key === state.active;
    const label = conv.type === 'room' ? `# ${conv.name}` : `@ ${conv.name}`;
    const button = el('button', {
      type: 'button',
      class: `conv${isActive ? ' active' : ''}${conv.type === 'dm' ? ' dm' : ''}`,
      'data-testid': conv.type === 'room' ? 'conv-room' : 'conv-dm',
      'data-conv': conv.key,
      'aria-current': isActive ? 'true' : null,
      title: conv.type === 'room' ? conv.name : `Private chat with ${conv.name}`,
    }, el('span', { class: 'conv-name', text: label }));
    if (conv.type === 'dm') button.append(el('span', { class: 'private-tag small', text: 'private' }));
    if (conv.unread) {
      button.append(el('span', {
        class: 'badge', 'data-testid': 'unread', 'aria-label': `${conv.unread} unread`, text: String(conv.unread),
      }));
    }
    list.append(el('li', {}, button));
  }
}

/** Guest mode asks for a display name; token mode (no guests on this server) for a token. */
export function renderAuthMode() {
  const tokenMode = state.authMode === 'token';
  $('token-form').hidden = !tokenMode;
  $('name-field').hidden = tokenMode;
}

/**
 * Who is online in the last room shown (the user first; the others are buttons to a DM), at
 * most the first 100 the server named, "and N more" beyond them, and the room's member count.
 */
export function renderMembers() {
  const list = $('member-list');
  list.replaceChildren();
  const room = state.convs.get(state.lastRoom);
  const title = $('members-title');
  const more = $('members-more');
  const count = $('member-count');
  if (!room) {
    title.textContent = 'Online';
    more.hidden = true;
    count.hidden = true;
    return;
  }
  const members = [...room.members.values()].sort((a, b) => {
    if (me() && a.id === me().id) return -1;
    if (me() && b.id === me().id) return 1;
    return a.name.localeCompare(b.name);
  });
  const stale = !room.joined && room.everJoined;
  const online = Math.max(members.length, room.onlineCount || 0);
  title.textContent = stale ? `Last known online · ${online}` : `Online · ${online}`;
  more.hidden = online <= members.length;
  more.textContent = `and ${online - members.length} more`;
  count.hidden = !room.memberCount;
  count.textContent = room.memberCount === 1 ? '1 member' : `${room.memberCount} members`;
  title.title = `Online now in ${room.name}`;
  for (const user of members) {
    const mine = me() && user.id === me().id;
    const inner = [el('span', { class: 'presence', 'aria-hidden': 'true' }), el('span', { class: 'member-name', text: user.name })];
    if (mine) inner.push(el('span', { class: 'you', text: '(you)' }));
    const node = mine
      ? el('span', { class: 'member me-member', 'data-testid': 'member', 'data-user-id': user.id, 'data-name': user.name }, ...inner)
      : el('button', {
        type: 'button',
        class: `member${state.active === `dm:${user.id}` ? ' active' : ''}`,
        'data-testid': 'member',
        'data-user-id': user.id,
        'data-name': user.name,
        title: `Send ${user.name} a private message`,
      }, ...inner);
    list.append(el('li', {}, node));
  }
}

/** The header, composer labels, title and address of the conversation on screen. */
export function renderHeader(conv) {
  const isRoom = conv.type === 'room';
  $('conv-title').textContent = conv.name;
  $('conv-title').title = isRoom ? `Room id ${conv.id}` : `User id ${conv.id}`;
  $('private-tag').hidden = isRoom;
  const visibility = $('room-visibility');
  visibility.hidden = !isRoom || !conv.visibility;
  visibility.textContent = conv.visibility === 'private' ? 'private room' : 'public room';
  visibility.dataset.visibility = conv.visibility || '';
  $('room-tools').hidden = !isRoom;
  $('dm-tools').hidden = isRoom;
  if (isRoom) {
    // A private room's link carries an invite (session.js makes one); a public room's needs none.
    const link = new URL(apiBase);
    link.search = `?room=${encodeURIComponent(conv.id)}`;
    const waiting = conv.visibility === 'private' && !(conv.invite && conv.invite.code);
    if (conv.visibility === 'private' && !waiting) link.searchParams.set('invite', conv.invite.code);
    $('share-link').value = waiting ? '' : link.toString();
    $('share-link').placeholder = waiting ? 'Making an invite link…' : '';
    $('share-link').dataset.visibility = conv.visibility || '';
    $('copy-link').disabled = waiting;
    history.replaceState(null, '', `?room=${encodeURIComponent(conv.id)}`);
  }
  $('message-input').placeholder = isRoom ? 'Write a message…' : 'Write a private message…';
  $('message-input').setAttribute('aria-label', isRoom ? `Message to ${conv.name}` : `Private message to ${conv.name}`);
  document.title = `${conv.name} · roomcast`;
}

export function showLobby() {
  $('lobby').hidden = false;
  $('chat').hidden = true;
  document.body.dataset.view = 'lobby';
  document.title = 'roomcast';
  if (!state.invite) history.replaceState(null, '', location.pathname);
  renderMe();
}

export function showChat() {
  $('lobby').hidden = true;
  $('chat').hidden = false;
  document.body.dataset.view = 'chat';
  renderMe();
}

/** The user's name and the sign-out button, shown in the chat view only. */
export function renderMe() {
  const user = me();
  const showUser = !!user && !$('chat').hidden;
  $('me').hidden = !showUser;
  $('sign-out').hidden = !showUser;
  if (user) {
    $('me').textContent = user.name;
    $('me').title = `Signed in as ${user.name} (id ${user.id})`;
  }
}
