// The one WebSocket: connect, reconnect with capped exponential backoff, send client frames
// and hand each server frame to its handler. It knows nothing of rooms or of the page: setup()
// gives it its hooks. The connection machinery (the socket, its timers and attempts, the
// requests awaiting their reply) is kept here and nowhere else.

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10000;

const CLOSE_REASONS = {
  1001: 'the server is restarting',
  1006: 'the connection was lost',
  1008: 'the connection was idle too long',
  1009: 'a message was too large',
  1011: 'the server had an error',
  1012: 'the server is moving you to another one',
  4008: 'the connection could not keep up',
  4401: 'your session expired',
  4403: 'you were removed from the chat',
};

// The server frames that reply to a client frame. Each client frame gets exactly one reply,
// in order: the oldest open request is its match.
const REPLIES = new Set(['joined', 'left', 'ack', 'error']);

const conn = {
  ws: null,
  open: false,
  attempt: 0,
  failedOpens: 0,
  retryTimer: null,
  countdownTimer: null,
  nextRetryAt: 0,
  disconnectReason: '',
  requests: [], // client frames awaiting their one reply, in order (joined/left/ack/error)
};

let hooks = null;

/**
 * Installs the hooks (once, before anything else here is called):
 * - `url()`: the WebSocket URL (absolute path or URL) to connect to;
 * - `wanted()`: whether the page wants a connection now;
 * - `onStatus(kind, text)`: shows the connection's state (idle, connecting, reconnecting);
 * - `onOpen()`, `onClose()`: the socket opened / the open socket closed, before any retry;
 * - `onOpenError(err)`: the socket could not even be created;
 * - `beforeRetry()`: (async) runs before a retry once opening failed twice in a row;
 * - `handlers`: server frame type → `handler(frame, request)`, where `request` is the client
 *   frame that a reply answers (null for other frames); other types are ignored.
 */
export function setup(options) {
  hooks = options;
  window.addEventListener('online', () => {
    if (!conn.ws && conn.retryTimer) retryNow();
  });
  window.addEventListener('offline', () => {
    if (conn.retryTimer) {
      conn.disconnectReason = 'You are offline';
    }
  });
}

export const isOpen = () => conn.open;

/** Sends a client frame; false if the socket is not open (nothing was sent). */
export function send(frame) {
  if (!conn.ws || !conn.open) return false;
  conn.ws.send(JSON.stringify(frame));
  conn.requests.push({ type: frame.type, room: frame.room, since: frame.since, clientMsgId: frame.clientMsgId });
  return true;
}

/** Connects unless connected, connecting, waiting to retry, or not wanted. */
export function ensure() {
  if (conn.ws || conn.retryTimer || !hooks.wanted()) return;
  connect();
}

/** The connection is in use again: the next drop starts the backoff from the beginning. */
export function resetBackoff() {
  conn.attempt = 0;
}

/** Retries at once instead of waiting for the timer. */
export function retryNow() {
  if (conn.ws) return;
  conn.attempt = Math.min(conn.attempt, 1);
  connect();
}

/** Reconnects now (e.g. under a new identity): the open socket is closed as if it dropped. */
// Without a socket there is nothing to do: the pending retry (or the next ensure()) connects
// with the new token anyway.
export function restart() {
  const { ws } = conn;
  if (!ws) return;
  conn.ws = null;
  conn.open = false;
  conn.requests = [];
  ws.close(1000, 'new session');
  hooks.onClose();
  conn.attempt = 0;
  connect();
}

/** Closes the socket on purpose: no retry. */
export function close() {
  clearTimeout(conn.retryTimer);
  conn.retryTimer = null;
  stopCountdown();
  const { ws } = conn;
  conn.ws = null;
  conn.open = false;
  conn.attempt = 0;
  if (ws) ws.close(1000, 'bye');
  hooks.onStatus('idle');
}

function url() {
  const target = new URL(hooks.url(), location.href);
  target.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return target.toString();
}

function connect() {
  clearTimeout(conn.retryTimer);
  conn.retryTimer = null;
  stopCountdown();
  if (!hooks.wanted()) return;
  hooks.onStatus('connecting', conn.attempt ? 'Reconnecting…' : 'Connecting…');
  let ws;
  try {
    ws = new WebSocket(url());
  } catch (err) {
    hooks.onOpenError(err);
    scheduleReconnect(null);
    return;
  }
  conn.ws = ws;
  let opened = false;
  ws.onopen = () => {
    if (conn.ws !== ws) return;
    opened = true;
    conn.open = true;
    conn.failedOpens = 0;
    conn.requests = [];
    hooks.onStatus('connecting', 'Joining rooms…');
    hooks.onOpen();
  };
  ws.onmessage = (event) => {
    if (conn.ws !== ws) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    dispatch(frame);
  };
  ws.onclose = (event) => {
    if (conn.ws !== ws) return;
    conn.ws = null;
    conn.open = false;
    conn.requests = [];
    hooks.onClose();
    if (!opened) conn.failedOpens += 1;
    // The token expired while connected: check (and renew) the identity before the retry.
    if (event.code === 4401) conn.failedOpens = Math.max(conn.failedOpens, 2);
    // This instance is draining: another one takes us at once.
    if (event.code === 1012) conn.attempt = 0;
    scheduleReconnect(event);
  };
}

function dispatch(frame) {
  const request = REPLIES.has(frame.type) ? conn.requests.shift() || null : null;
  const handler = hooks.handlers[frame.type];
  return handler ? handler(frame, request) : undefined; // newer frame types: ignored
}

function scheduleReconnect(event) {
  if (!hooks.wanted()) {
    hooks.onStatus('idle');
    return;
  }
  // Exponential backoff with jitter, capped: 0.25–0.5 s, 0.5–1 s, 1–2 s, … 5–10 s.
  const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** conn.attempt);
  const delay = Math.round(cap / 2 + (Math.random() * cap) / 2);
  conn.attempt += 1;
  conn.nextRetryAt = Date.now() + delay;
  const why = navigator.onLine === false
    ? 'You are offline'
    : `Disconnected: ${(event && CLOSE_REASONS[event.code]) || 'the connection was lost'}`;
  conn.disconnectReason = why;
  conn.retryTimer = setTimeout(async () => {
    conn.retryTimer = null;
    if (conn.failedOpens >= 2) await hooks.beforeRetry();
    connect();
  }, delay);
  startCountdown();
}

function startCountdown() {
  stopCountdown();
  const tick = () => {
    const secs = Math.max(0, Math.ceil((conn.nextRetryAt - Date.now()) / 1000));
    hooks.onStatus('reconnecting', `${conn.disconnectReason}. Retrying in ${secs} s…`);
  };
  tick();
  conn.countdownTimer = setInterval(tick, 500);
}

function stopCountdown() {
  clearInterval(conn.countdownTimer);
  conn.countdownTimer = null;
}
