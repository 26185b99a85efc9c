// Must NOT type-check: typo'd frame fields. Every line marked WRONG must be reported by tsc,
// and no other line (run.sh checks both).
import type { ClientFrame } from "../gen/ws-client-frames.js";
import type { ServerFrame } from "../gen/ws-server-frames.js";

export function send(room: string): ClientFrame {
  return { type: "message", room, bdy: "hello" }; // WRONG: `bdy` is not `body`
}

export function show(frame: ServerFrame): string {
  if (frame.type === "message") {
    return `${frame.form.name}: ${frame.body}`; // WRONG: `form` is not `from`
  }
  if (frame.type === "joined") {
    return `${frame.room}: ${frame.body}`; // WRONG: a `joined` frame has no `body`
  }
  return frame.type;
}
