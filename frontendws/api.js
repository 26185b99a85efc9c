// The chat's REST API (contract v1): a request helper that turns RFC 9457 problems into
// ApiError, and one function for each endpoint the page uses. A call that needs the user's
// identity takes its token; nothing here reads the page's state.

const HISTORY_LIMIT = 50;
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

async function request(method, path, body, { token = null } = {}) {
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
    throw new ApiError(res.status, detail, data && data.code);
  }
  return data;
}

/** `POST /create-room`: `{roomId, name, ...}`. */
export function createRoom(name) {
  return request('POST', 'create-room', name ? { name } : undefined);
}

/**
 * `POST /join-room/{roomId}` as the guest `userName`, or as the token's user:
 * `{roomId, user, token, websocketUrl}`.
 */
export function joinRoom(roomId, userName, token = null) {
  return request('POST', `join-room/${enc(roomId)}`, { user: userName }, { token });
}

/** `GET /rooms/{roomId}`: `{name, members: [{id, name, online}], ...}`. */
export function getRoom(roomId) {
  return request('GET', `rooms/${enc(roomId)}`);
}

/** `GET /rooms/{roomId}/messages`: the latest page of history, or the one before `before`. */
export function getMessages(roomId, before = null) {
  const query = before ? `&before=${enc(before)}` : '';
  return request('GET', `rooms/${enc(roomId)}/messages?limit=${HISTORY_LIMIT}${query}`);
}
