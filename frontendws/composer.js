// The message box: its height and character count, and sending what was typed (Enter or the
// Send button; Shift+Enter for a new line).

import { $ } from './dom.js';
import { MAX_BODY, send } from './outbox.js';
import { showError } from './render.js';
import { activeConv } from './state.js';

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

export function wireComposer() {
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
}
