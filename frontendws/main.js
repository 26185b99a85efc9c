// roomcast browser client: plain JavaScript modules, no build step, nothing loaded from
// elsewhere. This is the entry point: it connects the socket to the live handlers, wires the
// page's controls to the actions, and starts where the last visit left off (or in the lobby).
//
// Talks to the chat API of contract v2 (shared CONTRACT.md): an identity first (a guest
// token, or a pasted access token: session.js), then REST for rooms, membership, invites and
// history (api.js, directory.js), one WebSocket for everything live (socket.js, live.js). What
// the page shows is in state.js, drawn by render.js and message-list.js, with every body set
// as text, never as HTML.

import * as api from './api.js';
import { wireComposer } from './composer.js';
import {
  activate, clearUnread, dmConv, makeConv, removeConv,
} from './conversations.js';
import { moreRooms, refreshDirectory, renderDirectory, resetDirectory } from './directory.js';
import { $ } from './dom.js';
import { shortId } from './format.js';
import { ensureDirectHistory, loadOlder } from './history.js';
import * as live from './live.js';
import { isAtBottom } from './message-list.js';
import { retryItem } from './outbox.js';
import {
  hideBanner, renderAuthMode, renderConnection, showChat, showError, showLobby,
} from './render.js';
import {
  checkIdentity, createRoom, ensureIdentity, joinRoom, leaveRoom, renewIdentity, setIdentity,
  showInvite, showShareLink, signOut, useToken,
} from './session.js';
import * as socket from './socket.js';
import {
  activeConv, closeDm, me, roomConv, rooms, savedRooms, state, token, tokenExpired,
} from './state.js';

/** A room id or a room link (whose invite, if any, comes along): `{room, invite}`. */
function parseRoomInput(text) {
  const value = text.trim();
  if (!value) return { room: '', invite: null };
  try {
    const url = new URL(value);
    const room = url.searchParams.get('room');
    if (room) return { room, invite: url.searchParams.get('invite') };
  } catch {
    /* not a link: an id */
  }
  const m = value.match(/[?&]room=([^&#]+)/);
  if (!m) return { room: value, invite: null };
  const inv = value.match(/[?&]invite=([^&#]+)/);
  return { room: decodeURIComponent(m[1]), invite: inv ? decodeURIComponent(inv[1]) : null };
}

// The WebSocket URL: the one join-room gave (it has the mount prefix), with the current token.
function websocketUrl() {
  const url = new URL(state.identity.websocketUrl || 'ws', api.apiBase);
  url.searchParams.set('token', state.identity.token);
  return url.toString();
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
    if (state.identity && state.identity.kind !== 'token' && state.identity.user
      && state.identity.user.name !== name && !rooms().length) {
      setIdentity(null); // a new name is a new guest user
      resetDirectory();
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
      await joinRoom(state.invite.room, state.invite.code);
      state.invite = null;
      $('invite').hidden = true;
    });
  });

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    busy($('token-form'), async () => {
      await useToken($('token-input').value);
      $('token-input').value = '';
      const status = $('token-status');
      status.hidden = false;
      status.textContent = me() ? `Signed in as ${me().name}.` : 'Token accepted.';
      await refreshDirectory();
    });
  });

  $('rooms-refresh').addEventListener('click', () => {
    busy($('room-directory'), async () => {
      await ensureIdentity();
      await refreshDirectory();
    });
  });
  $('rooms-more').addEventListener('click', () => busy($('room-directory'), moreRooms));
  $('room-list').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-room-id]');
    if (button) busy($('room-directory'), () => joinRoom(button.dataset.roomId));
  });

  const onCreate = (form, input, visibility) => (e) => {
    e.preventDefault();
    busy(form, async () => {
      await createRoom(input.value.trim(), visibility.value);
      input.value = '';
      visibility.value = 'public';
      $('add-room').open = false;
      $('message-input').focus();
    });
  };
  const onJoin = (form, input) => (e) => {
    e.preventDefault();
    const { room: id, invite } = parseRoomInput(input.value);
    if (!id) {
      showError('Enter a room id or a room link.');
      input.focus();
      return;
    }
    busy(form, async () => {
      await joinRoom(id, invite);
      input.value = '';
      $('add-room').open = false;
      $('message-input').focus();
    });
  };
  $('create-form').addEventListener('submit', onCreate($('create-form'), $('create-name'), $('create-visibility')));
  $('join-form').addEventListener('submit', onJoin($('join-form'), $('join-id')));
  $('sb-create-form').addEventListener('submit', onCreate($('sb-create-form'), $('sb-create-name'), $('sb-create-visibility')));
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
    if (conv && conv.type === 'room') busy($('room-tools'), () => leaveRoom(conv));
  });
  $('close-dm').addEventListener('click', () => {
    const conv = activeConv();
    if (!conv || conv.type !== 'dm') return;
    const last = [...conv.items].reverse().find((it) => it.kind === 'message' && it.id);
    closeDm(conv.id, last && last.id);
    removeConv(conv);
  });

  // The buttons of the conversation list, the member list and the message lists are rendered
  // without handlers: their clicks are handled here, one listener for each list.
  $('conv-list').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-conv]');
    const conv = button && state.convs.get(button.dataset.conv);
    if (!conv) return;
    activate(conv);
    // A private conversation listed from the server shows its messages when first opened.
    ensureDirectHistory(conv);
  });
  $('member-list').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-user-id]');
    if (!button) return;
    const conv = dmConv({ id: button.dataset.userId, name: button.dataset.name });
    activate(conv);
    ensureDirectHistory(conv);
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

  wireComposer();

  document.addEventListener('visibilitychange', () => {
    const conv = activeConv();
    if (!document.hidden && conv && isAtBottom(conv.listEl)) clearUnread(conv);
  });
}

function init() {
  api.setAuth({ token, expired: tokenExpired, renew: renewIdentity });
  socket.setup({
    url: websocketUrl,
    wanted: () => !!state.identity && rooms().length > 0,
    onStatus: renderConnection,
    onOpen: live.onSocketOpen,
    onClose: live.onSocketClose,
    onOpenError: (err) => showError(`Cannot open the connection: ${api.describeError(err)}`),
    beforeRetry: checkIdentity,
    handlers: live.handlers,
  });
  wire();
  renderAuthMode();
  renderDirectory();
  const params = new URLSearchParams(location.search);
  const invite = params.get('room');
  const inviteCode = params.get('invite');
  const saved = state.identity ? savedRooms() : [];
  if (state.identity && Array.isArray(saved) && saved.length) {
    // Back in the rooms of the last visit.
    for (const r of saved) {
      if (!r || !r.id || roomConv(r.id)) continue;
      const conv = makeConv('room', r.id, r.name || shortId(r.id));
      conv.visibility = r.visibility === 'private' || r.visibility === 'public' ? r.visibility : null;
      conv.invite = r.invite && r.invite.code ? r.invite : null;
    }
    showChat();
    activate((invite && roomConv(invite)) || rooms()[0]);
    for (const conv of rooms()) showShareLink(conv);
    socket.ensure();
    if (invite && !roomConv(invite)) joinRoom(invite, inviteCode).catch((err) => showError(api.describeError(err)));
    return;
  }
  showLobby();
  if (state.identity) refreshDirectory();
  if (invite) {
    showInvite(invite, inviteCode);
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
