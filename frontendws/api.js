// The chat's REST API (contract v2): a request helper that turns RFC 9457 problems into
// ApiError, and one function for each endpoint the page uses. Every call but `POST /guests`
// carries the user's token (`Authorization: Bearer`). Nothing here reads the page's state:
// setAuth() tells it where the token comes from and how to get a new one, which it does once
// before a call when the token has expired, and once (then retries) when a call answers 401.

const HISTORY_LIMIT = 50;
export const ROOMS_PAGE = 10;
export const MEMBERS_PAGE = 100;
const enc = encodeURIComponent;

// The API lives beside the page (the demo mounts both at `/`), so paths are relative to the
// page's directory; a host that nests the chat at `/chat/` works unchanged.
export const apiBase = new URL('.', location.href);
const apiUrl = (path) => new URL(path, apiBase).toString();

export class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

export function describeError(err) {
  if (err instanceof ApiError) return err.message;
  return String(err && err.message ? err.message : err);
}

let auth = {
  token: () => null,
  expired: () => false,
  renew: async () => { throw new ApiError(401, 'Not signed in.', 'unauthorized'); },
};
let renewing = null;

/**
 * Installs where the token comes from (once, before any call):
 * - `token()`: the current token, or null;
 * - `expired()`: whether it is known to have expired;
 * - `renew()`: (async) gets a new identity, or throws what to tell the user.
 */
export function setAuth(hooks) {
  auth = hooks;
}

/** Renews the identity; callers at the same time share one renewal. */
export function renew() {
  if (!renewing) renewing = Promise.resolve().then(auth.renew).finally(() => { renewing = null; });
  return renewing;
}

/** How long to wait before the one retry of a call the server answered 503 (unavailable). */
const UNAVAILABLE_RETRY_MS = 400;

/**
 * One call; a 503 (the chat backend briefly unavailable: a Redis round trip over its budget,
 * a reconnect) is tried once more after a short pause before it is shown to the user.
 */
async function send(method, path, body, token) {
  try {
    return await sendOnce(method, path, body, token);
  } catch (err) {
    if (err.status !== 503) throw err;
    await new Promise((resolve) => setTimeout(resolve, UNAVAILABLE_RETRY_MS));
    return sendOnce(method, path, body, token);
  }
}

async function sendOnce(method, path, body, token) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(apiUrl(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (err) {
    throw new ApiError(0, `Cannot reach the server (${err.message}).`, 'network');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    // RFC 9457 problem+json: `detail` says what went wrong this time.
    const detail = (data && (data.detail || data.title)) || `${res.status} ${res.statusText}`.trim();
    const err = new ApiError(res.status, detail, data && data.code);
    const retryAfter = Number(res.headers.get('Retry-After'));
    if (res.status === 429 && retryAfter > 0) err.message = `${detail} (try again in ${retryAfter} s)`;
    throw err;
  }
  return data;
}

/**
 * A call as the user. `renewal: false` is for the calls that renewing makes itself: they use
 * the token as it is and never renew.
 */
async function request(method, path, body, { renewal = true } = {}) {
  if (!renewal) return send(method, path, body, auth.token());
  if (!auth.token() || auth.expired()) await renew();
  try {
    return await send(method, path, body, auth.token());
  } catch (err) {
    if (err.status !== 401) throw err;
    await renew(); // the token is no longer accepted: a new identity, then once more
    return send(method, path, body, auth.token());
  }
}

/** `POST /guests` (anonymous): `{user: {id, name}, token, expiresAt}`; 404 when the server has no guest mode. */
export function createGuest(name) {
  return send('POST', 'guests', { name }, null);
}

/** `POST /create-room`: `{roomId, name, createdAt, visibility}`; the user is its first member. */
export function createRoom(name, visibility = 'public') {
  const body = { visibility };
  if (name) body.name = name;
  return request('POST', 'create-room', body);
}

/**
 * `POST /join-room/{roomId}`, with an invite for a private room:
 * `{roomId, user, token, websocketUrl}`. 404: no such room, or private and no valid invite.
 */
export function joinRoom(roomId, invite = null, options = {}) {
  return request('POST', `join-room/${enc(roomId)}`, invite ? { invite } : {}, options);
}

/** `POST /rooms/{roomId}/invites`: `{invite, expiresAt}`, a code that admits its holder. */
export function createInvite(roomId) {
  return request('POST', `rooms/${enc(roomId)}/invites`);
}

/** `DELETE /rooms/{roomId}/members/me`: the user stops being a member (204). */
export function leaveRoom(roomId) {
  return request('DELETE', `rooms/${enc(roomId)}/members/me`);
}

/** `GET /rooms`: a page of the rooms the user may see, newest first: `{rooms, nextCursor}`. */
export function listRooms(cursor = null, limit = ROOMS_PAGE, options = {}) {
  const query = cursor ? `&cursor=${enc(cursor)}` : '';
  return request('GET', `rooms?limit=${limit}${query}`, undefined, options);
}

/** `GET /rooms/{roomId}`: `{name, visibility, memberCount, members: [{id, name, online}] (first 100)}`. */
export function getRoom(roomId) {
  return request('GET', `rooms/${enc(roomId)}`);
}

/** `GET /rooms/{roomId}/members`: a page of members, `{members, nextCursor}`. */
export function getMembers(roomId, cursor = null, limit = MEMBERS_PAGE) {
  const query = cursor ? `&cursor=${enc(cursor)}` : '';
  return request('GET', `rooms/${enc(roomId)}/members?limit=${limit}${query}`);
}

/** `GET /directs`: our private conversations, the most recent first: `{conversations: [{user, lastMessage}], nextBefore}`. */
export function getConversations(before = null) {
  const query = before ? `&before=${enc(before)}` : '';
  return request('GET', `directs?limit=${HISTORY_LIMIT}${query}`);
}

/** `GET /directs/{userId}/messages`: the latest page of the conversation with a user. */
export function getDirects(userId, before = null) {
  const query = before ? `&before=${enc(before)}` : '';
  return request('GET', `directs/${enc(userId)}/messages?limit=${HISTORY_LIMIT}${query}`);
}

/** `GET /rooms/{roomId}/messages`: the latest page of history, or the one before `before`. */
export function getMessages(roomId, before = null) {
  const query = before ? `&before=${enc(before)}` : '';
  return request('GET', `rooms/${enc(roomId)}/messages?limit=${HISTORY_LIMIT}${query}`);
}
