// Must NOT type-check: error codes that the contract does not list. Every line marked WRONG
// must be reported by tsc, and no other line (run.sh checks both).
import type { components } from "../gen/openapi.js";
import type { ErrorCode, ServerFrame } from "../gen/ws-server-frames.js";

type Problem = components["schemas"]["Problem"];

export function retry(frame: ServerFrame): boolean {
  return frame.type === "error" && frame.code === "room_is_full_typo"; // WRONG: no such ErrorCode
}

export const code: ErrorCode = "not_in_rooom"; // WRONG: typo of `not_in_room`

export function relogin(problem: Problem): boolean {
  return problem.code === "token_expired"; // WRONG: no such ProblemCode
}

export function explain(problem: Problem): string {
  switch (problem.code) {
    case "room_not_foud": // WRONG: typo of `room_not_found`
      return "not there";
    default:
      return "error";
  }
}
