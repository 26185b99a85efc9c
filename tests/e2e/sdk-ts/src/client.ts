// A small roomcast client written only against the types generated from the checked-in
// contract files: `gen/openapi.d.ts` (openapi-typescript, used through openapi-fetch) and
// `gen/ws-client-frames.d.ts` / `gen/ws-server-frames.d.ts` (json-schema-to-typescript).
// run.sh type-checks it with `tsc --strict` and runs it against a live demo-server
// (RC_BASE_URL). Scenario, contract v2: two guests (a token first), a room, a join, two
// WebSockets talking, a direct message, history paged with `nextBefore`, typed problems
// (REST) and a typed error frame (WebSocket). Exits non-zero on the first failed check.

import createClient from "openapi-fetch";
import WebSocket from "ws";
import type { components, paths } from "../gen/openapi.js";
import type { ClientFrame } from "../gen/ws-client-frames.js";
import type { ErrorCode, ServerFrame } from "../gen/ws-server-frames.js";

type Problem = components["schemas"]["Problem"];
type ProblemCode = components["schemas"]["ProblemCode"];

const BASE_URL = process.env.RC_BASE_URL ?? "";
if (!BASE_URL) throw new Error("RC_BASE_URL is not set");
const TIMEOUT_MS = 10_000;

const api = createClient<paths>({ baseUrl: BASE_URL });
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

let checks = 0;
function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${what}`);
  checks += 1;
}

/** What a person would show for a problem. Each `case` label is checked against the
 * generated `ProblemCode` union (a typo'd code does not compile); codes added to the contract
 * later fall through to `default`, so a newer server does not break this client's build. */
function explain(code: ProblemCode): string {
  switch (code) {
    case "bad_request":
    case "invalid_value":
    case "bad_frame":
    case "empty_body":
    case "body_too_large":
    case "unsupported_media_type":
    case "method_not_allowed":
      return "the request was not valid";
    case "unauthorized":
    case "forbidden":
      return "sign in again";
    case "room_not_found":
    case "user_not_found":
    case "not_found":
      return "not there";
    case "not_in_room":
    case "recipient_offline":
    case "inbox_full":
      return "not now";
    case "rate_limited":
      return "slow down";
    case "unavailable":
    case "internal":
      return "try again later";
    default:
      return `error ${code}`;
  }
}

function explainFrame(code: ErrorCode): string {
  return explain(code);
}

function expectProblem(error: Problem | undefined, status: number, code: ProblemCode): Problem {
  check(error !== undefined, `a problem with code ${code}`);
  check(error.status === status, `status ${error.status} is ${status}`);
  check(error.code === code, `code ${error.code} is ${code}`);
  check(error.type === `urn:roomcast:problem:${code}`, `type of ${code}`);
  check(explain(error.code).length > 0, "explained");
  return error;
}

async function guest(name: string) {
  const { data, error, response } = await api.POST("/guests", { body: { name } });
  check(response.status === 201 && error === undefined && data !== undefined, `guest ${name} created`);
  check(data.user.name === name && data.token.length > 0, "a guest token");
  return data;
}

/** A WebSocket that queues the server frames it receives, typed. */
class Socket {
  private readonly ws: WebSocket;
  private readonly frames: ServerFrame[] = [];
  private waiters: Array<() => void> = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on("message", (data: WebSocket.RawData) => {
      this.frames.push(JSON.parse(data.toString()) as ServerFrame);
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    });
  }

  static open(token: string): Promise<Socket> {
    const url = new URL(`/ws?token=${encodeURIComponent(token)}`, BASE_URL);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(new Socket(ws)));
      ws.once("error", reject);
    });
  }

  send(frame: ClientFrame): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** The next frame of the given type (frames of other types before it are skipped). */
  async next<T extends ServerFrame["type"]>(type: T): Promise<Extract<ServerFrame, { type: T }>> {
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      const index = this.frames.findIndex((f) => f.type === type);
      if (index >= 0) {
        const [frame] = this.frames.splice(index, 1);
        return frame as Extract<ServerFrame, { type: T }>;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type} frame within ${TIMEOUT_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.ws.close(1000);
  }
}

/** Narrowing on `type`: each branch sees exactly its frame's fields. */
function describe(frame: ServerFrame): string {
  switch (frame.type) {
    case "joined":
      return `joined ${frame.room} with ${frame.members.length} online`;
    case "left":
      return `left ${frame.room}`;
    case "message":
      return `${frame.from.name} in ${frame.room}: ${frame.body}`;
    case "direct":
      return `${frame.from.name} to ${frame.to}: ${frame.body}`;
    case "system":
      return `${frame.user.name} ${frame.event === "user_joined" ? "joined" : "left"} ${frame.room}`;
    case "ack":
      return `ack ${frame.id} at ${frame.ts}`;
    case "error":
      return `error ${frame.code}: ${frame.message} (${explainFrame(frame.code)})`;
    case "resync":
      return `resync: ${frame.reason}`;
  }
}

async function main(): Promise<void> {
  // Unknown paths and bad queries are problems too.
  const lost = await fetch(new URL("/no/such/path", BASE_URL));
  check(lost.status === 404, "unknown path: 404");
  check(lost.headers.get("content-type") === "application/problem+json", "unknown path: problem+json");
  expectProblem((await lost.json()) as Problem, 404, "not_found");

  // Without a token: a typed 401.
  const anonymous = await api.GET("/rooms", {});
  expectProblem(anonymous.error, 401, "unauthorized");

  const alice = await guest("alice");
  const bob = await guest("bob");

  const created = await api.POST("/create-room", {
    headers: bearer(alice.token),
    body: { name: "SDK room", visibility: "public" },
  });
  check(created.response.status === 201 && created.data !== undefined, "room created");
  const room = created.data;
  check(room.name === "SDK room" && room.visibility === "public", "room as asked");

  const joined = await api.POST("/join-room/{roomId}", {
    params: { path: { roomId: room.roomId } },
    headers: bearer(bob.token),
    body: {},
  });
  check(joined.data !== undefined, "bob joined over REST");
  check(joined.data.roomId === room.roomId && joined.data.user.id === bob.user.id, "join response");

  const listed = await api.GET("/rooms", { headers: bearer(bob.token), params: { query: { limit: 50 } } });
  check(listed.data !== undefined && listed.data.rooms.some((r) => r.roomId === room.roomId), "room listed");

  const ids: string[] = [];
  const a = await Socket.open(alice.token);
  const b = await Socket.open(joined.data.token);
  try {
    a.send({ type: "join", room: room.roomId });
    const aJoined = await a.next("joined");
    check(aJoined.room === room.roomId, "alice joined over the WebSocket");
    b.send({ type: "join", room: room.roomId });
    const bJoined = await b.next("joined");
    check(bJoined.members.some((m) => m.id === bob.user.id), "bob is in the joined members");
    const arrival = await a.next("system");
    check(arrival.event === "user_joined" && arrival.user.id === bob.user.id, describe(arrival));

    const bodies = ["one", "two", "three"];
    for (const [i, body] of bodies.entries()) {
      a.send({ type: "message", room: room.roomId, body, clientMsgId: `c${i}` });
      const ack = await a.next("ack");
      check(ack.clientMsgId === `c${i}`, "ack echoes clientMsgId");
      const got = await b.next("message");
      check(got.id === ack.id && got.body === body && got.from.id === alice.user.id, describe(got));
      ids.push(got.id);
    }

    b.send({ type: "direct", to: alice.user.id, body: "psst", clientMsgId: "d1" });
    const directAck = await b.next("ack");
    check(directAck.clientMsgId === "d1", "direct acknowledged");
    const direct = await a.next("direct");
    check(direct.from.id === bob.user.id && direct.to === alice.user.id && direct.body === "psst", describe(direct));

    // A typed error frame: a message to a room this connection has not joined.
    b.send({ type: "message", room: "no-such-room-joined", body: "x", clientMsgId: "e1" });
    const refused = await b.next("error");
    check(refused.clientMsgId === "e1", "error echoes clientMsgId");
    const code: ErrorCode = refused.code;
    check(code === "not_in_room" || code === "room_not_found", describe(refused));
  } finally {
    a.close();
    b.close();
  }

  // History, paged backwards with nextBefore, two at a time.
  const pages: string[][] = [];
  let before: string | undefined;
  for (let i = 0; i < 5; i++) {
    const page = await api.GET("/rooms/{roomId}/messages", {
      headers: bearer(bob.token),
      params: { path: { roomId: room.roomId }, query: before === undefined ? { limit: 2 } : { limit: 2, before } },
    });
    check(page.data !== undefined, "a page of history");
    pages.push(page.data.messages.map((m) => m.id));
    for (const m of page.data.messages) check(m.type === "message" && m.room === room.roomId, "history frame");
    const next = page.data.nextBefore;
    if (next === null || next === undefined) break;
    before = next;
  }
  check(JSON.stringify(pages.reverse().flat()) === JSON.stringify(ids), "history pages back in order");

  // The conversation list and the conversation, typed: alice's one conversation is bob's "psst".
  const conversations = await api.GET("/directs", {
    headers: bearer(alice.token),
    params: { query: { limit: 10 } },
  });
  check(conversations.data !== undefined, "alice's conversations");
  const [first] = conversations.data.conversations;
  check(first !== undefined && first.user.id === bob.user.id && first.user.name === bob.user.name, "bob, named");
  const last: string = first.lastMessage.body;
  check(last === "psst" && first.lastMessage.type === "direct", `the last message: ${last}`);
  check(conversations.data.nextBefore === null, "one page");
  const dms = await api.GET("/directs/{userId}/messages", {
    headers: bearer(alice.token),
    params: { path: { userId: bob.user.id } },
  });
  check(dms.data !== undefined && dms.data.messages.map((m) => m.id).includes(first.lastMessage.id), "the conversation");

  // Typed problems.
  const missing = await api.GET("/rooms/{roomId}", {
    headers: bearer(bob.token),
    params: { path: { roomId: "00000000-0000-4000-8000-000000000000" } },
  });
  expectProblem(missing.error, 404, "room_not_found");
  const fractional = await api.GET("/rooms/{roomId}/messages", {
    headers: bearer(bob.token),
    params: { path: { roomId: room.roomId }, query: { limit: 1.5 } },
  });
  const bad = expectProblem(fractional.error, 400, "bad_request");
  check(bad.detail === "`limit` must be a whole number from 1 to 200", `clean detail: ${bad.detail}`);

  const left = await api.DELETE("/rooms/{roomId}/members/me", {
    headers: bearer(bob.token),
    params: { path: { roomId: room.roomId } },
  });
  check(left.response.status === 204, "bob left");

  console.log(`client: ${checks} checks passed`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
