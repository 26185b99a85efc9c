// Rendering of a conversation's message list: the list itself, one element per item (message,
// system line, notice) and the status of the user's own messages. Every body is set with
// textContent, never as HTML. Buttons carry a data-action and no handler: main.js handles
// their clicks for all lists at once.

import { el } from './dom.js';
import { formatTime } from './format.js';

const STATUS_TEXT = {
  queued: 'waiting for connection…',
  pending: 'sending…',
  sent: '✓ sent',
  held: '✓ sent (they are offline)',
  unconfirmed: 'checking…',
  failed: 'not sent',
};

/** The (hidden) list of a new conversation, with its "load older" row or its private notice. */
export function createList(conv) {
  const list = el('ol', {
    class: 'messages',
    role: 'log',
    'aria-label': conv.type === 'room' ? `Messages in ${conv.name}` : `Private messages with ${conv.name}`,
    'data-testid': 'message-list',
    dataset: { conv: conv.key },
    hidden: true,
  });
  conv.olderEl = el('li', { class: 'older', hidden: true },
    el('button', { type: 'button', class: 'link-button', 'data-testid': 'load-older', 'data-action': 'load-older' }, 'Load older messages'));
  if (conv.type !== 'room') {
    list.append(el('li', { class: 'notice private-notice' },
      `Private conversation with ${conv.name}. Only the two of you see these messages.`));
  }
  list.append(conv.olderEl);
  return list;
}

export function isAtBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

export function scrollToBottom(conv) {
  conv.listEl.scrollTop = conv.listEl.scrollHeight;
}

export function renderItem(conv, item) {
  if (item.kind === 'system') {
    return el('li', { class: `system ${item.event || ''}`, 'data-testid': 'system-message', text: item.text });
  }
  if (item.kind === 'notice') {
    return el('li', { class: 'notice', 'data-testid': item.testid || 'notice', text: item.text });
  }
  const isDm = conv.type === 'dm';
  const meta = el('div', { class: 'meta' },
    el('span', { class: 'author', 'data-testid': 'message-author', text: item.mine ? `${item.from.name} (you)` : item.from.name }),
    isDm ? el('span', { class: 'private-tag small', text: 'private' }) : null,
    el('time', { datetime: new Date(item.ts).toISOString(), title: new Date(item.ts).toLocaleString(), text: formatTime(item.ts) }),
    item.mine ? el('span', { class: 'status', 'data-testid': 'message-status' }) : null);
  const body = el('div', { class: 'body', 'data-testid': 'message-body' });
  body.textContent = item.body; // text, never HTML
  const li = el('li', {
    class: `msg${item.mine ? ' mine' : ''}${isDm ? ' dm' : ''}`,
    'data-testid': isDm ? 'dm-message' : 'message',
    'data-from': item.from.id,
  }, meta, body);
  if (item.mine) {
    li.append(el('div', { class: 'failure', 'data-testid': 'message-failure' }));
    updateStatus(item, li);
  }
  if (item.id) li.dataset.id = item.id;
  return li;
}

/** Shows the status of one of the user's own messages (and Retry once it failed). */
export function updateStatus(item, li = item.el) {
  if (!li || !item.mine) return;
  li.dataset.status = item.status;
  const status = li.querySelector('.status');
  status.textContent = STATUS_TEXT[item.status] || item.status;
  status.title = item.status === 'sent' ? 'Delivered to the server'
    : item.status === 'held' ? 'Kept by the server: they get it when they are back online' : '';
  const failure = li.querySelector('.failure');
  failure.replaceChildren();
  if (item.status === 'failed') {
    failure.append(el('span', { class: 'status-error', 'data-testid': 'message-error', text: `Not sent: ${item.error || 'unknown error'}` }),
      ' ', el('button', {
        type: 'button', class: 'link-button', 'data-testid': 'retry-message', 'data-action': 'retry',
      }, 'Retry'));
  }
  if (item.id) li.dataset.id = item.id;
}
