// roomcast browser client: plain JavaScript modules, no build step, nothing loaded from
// elsewhere. This is the entry point: it connects the socket to the live handlers, wires the
// page's controls to the actions, and starts where the last visit left off (or in the lobby).
//
// Talks to the chat API of contract v1 (shared CONTRACT.md): REST for rooms, membership and
// history (api.js), one WebSocket for everything live (socket.js, live.js). What the page
// shows is in state.js, drawn by render.js and message-list.js, with every body set as text,
// never as HTML.

import * as api from './api.js';
import { wireComposer } from './composer.js';
import {
  activate, clearUnread, dmConv, makeConv, removeConv,
} from './conversations.js';
import { $ } from './dom.js';
import { shortId } from './format.js';
import { loadOlder } from './history.js';
import * as live from './live.js';
import { isAtBottom } from './message-list.js';
import { retryItem } from './outbox.js';
import {
  hideBanner, renderConnection, showChat, showError, showLobby,
} from './render.js';
import {
  checkIdentity, createRoom, joinRoom, leaveRoom, setIdentity, showInvite, signOut,
} from './session.js';
import * as socket from './socket.js';
import {
  activeConv, me, roomConv, rooms, savedRooms, state,
} from './state.js';

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

  wireComposer();

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
    onOpen: live.onSocketOpen,
    onClose: live.onSocketClose,
    onOpenError: (err) => showError(`Cannot open the connection: ${api.describeError(err)}`),
    beforeRetry: checkIdentity,
    handlers: live.handlers,
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
