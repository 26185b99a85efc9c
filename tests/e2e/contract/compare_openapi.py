"""Checks that the live document equals the committed openapi/openapi.json, `servers` included.

    python compare_openapi.py LIVE.json COMMITTED.json

Exits 1 with a unified diff of the two (keys sorted) when they differ.
"""

from __future__ import annotations

import difflib
import json
import sys


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as fd:
        doc = json.load(fd)
    return doc


def main() -> int:
    live_path, committed_path = sys.argv[1:3]
    live, committed = load(live_path), load(committed_path)
    if live == committed:
        print(f"compare_openapi: the live document equals {committed_path}")
        return 0
    dump = lambda d: json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False).splitlines()  # noqa: E731
    diff = difflib.unified_diff(dump(committed), dump(live), committed_path, "live /openapi.json", lineterm="")
    print("\n".join(list(diff)[:200]))
    print(
        f"compare_openapi: the live document differs from {committed_path}; regenerate it with "
        "`cargo run -p chat-tower --example gen-openapi` (or, if the code did not change, the "
        "demo-server binary is stale: `cargo build -p demo-server`)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
