"""Schemathesis against the live `/openapi.json`, as the last test of the pytest run.

Checks: not_a_server_error, response_schema_conformance, status_code_conformance,
content_type_conformance. `/ws` is not in the OpenAPI document (a WebSocket upgrade is the
AsyncAPI document's; its plain-HTTP answers, 400/401 problems, are checked in
test_contract_sdk.py).

Contract v2: every operation but the two documents needs an identity. Schemathesis sends a
fresh guest token (`POST /guests`, made here) as `Authorization: Bearer` on every request
(`--header`), so that it explores what an authenticated client sees rather than 401s.

The room ids, message ids and `nextCursor`s seeded by test_contract_sdk.py are offered to the
generator as dictionaries (half of the time), so that fuzzing also reads a non-empty history,
member and room pages with real cursors, and a private room (404 to this guest), not only 404s
for random room ids.

Environment (set by run.sh): RC_BASE_URL, RC_SEED_FILE, RC_WORK (a scratch directory),
SCHEMATHESIS_BIN; optional ST_MAX_EXAMPLES (default 50), ST_SEED (default: random; the seed is
printed for a replay), ST_WORKERS (default 2), ST_CHECKS (default: the four checks above; e.g.
`all` to explore, which also reports positive_data_acceptance and the like).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import urllib.request

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def _config(work: str) -> str | None:
    seed_file = os.environ["RC_SEED_FILE"]
    if not os.path.exists(seed_file):
        return None
    with open(seed_file, encoding="utf-8") as fd:
        seed = json.load(fd)
    rooms = ", ".join(_toml_string(v) for v in seed.get("roomIds") or [seed["roomId"]])
    messages = ", ".join(_toml_string(v) for v in seed["messageIds"])
    cursors = ", ".join(_toml_string(v) for v in seed.get("cursors") or ["0"])
    path = os.path.join(work, "schemathesis.toml")
    with open(path, "w", encoding="utf-8") as fd:
        fd.write(
            f"""[dictionaries.rooms]
values = [{rooms}]

[dictionaries.messages]
values = [{messages}]

[dictionaries.cursors]
values = [{cursors}]

[parameters]
"path.roomId" = {{ dictionary = "rooms", probability = 0.5 }}
"query.before" = {{ dictionary = "messages", probability = 0.5 }}
"query.cursor" = {{ dictionary = "cursors", probability = 0.5 }}
"""
        )
    return path


def _guest_token(base_url: str) -> str:
    """A fresh guest identity for the fuzzer (POST /guests)."""
    req = urllib.request.Request(
        f"{base_url}/guests",
        data=json.dumps({"name": "schemathesis"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201, resp.status
        return json.load(resp)["token"]


def test_schemathesis_against_the_live_document():
    work = os.environ["RC_WORK"]
    base_url = os.environ["RC_BASE_URL"].rstrip("/")
    token = _guest_token(base_url)
    report_dir = os.path.join(work, "schemathesis-report")
    cmd = [os.environ["SCHEMATHESIS_BIN"]]
    config = _config(work)
    if config:
        cmd += ["--config-file", config]
    cmd += [
        "run",
        f"{base_url}/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", os.environ.get("ST_CHECKS", CHECKS),
        "--max-examples", os.environ.get("ST_MAX_EXAMPLES", "50"),
        "--workers", os.environ.get("ST_WORKERS", "2"),
        "--request-timeout", "10",
        "--generation-database", "none",
        "--report", "json,har",
        "--report-dir", report_dir,
        "--no-color",
        "--output-truncate", "false",
    ]
    if os.environ.get("ST_SEED"):
        cmd += ["--seed", os.environ["ST_SEED"]]
    print("\n$ " + " ".join(c.replace(token, "<guest token>") for c in cmd), flush=True)
    # cwd: the scratch directory, so nothing (e.g. a .hypothesis folder) lands in the repo.
    proc = subprocess.run(cmd, cwd=work, timeout=300, check=False)

    reports = sorted(glob.glob(os.path.join(report_dir, "json-*.json")))
    assert reports, f"schemathesis wrote no JSON report (exit {proc.returncode})"
    with open(reports[-1], encoding="utf-8") as fd:
        report = json.load(fd)
    cases = report["test_cases"]
    print(
        f"schemathesis: {cases['generated']} test cases, {cases['with_failures']} with failures, "
        f"{cases['unique_failures']} unique failures, {cases['errored']} errored; "
        f"{report['operations']['tested']} operations tested; seed {report['seed']}",
        flush=True,
    )
    assert proc.returncode == 0, f"schemathesis found problems (exit {proc.returncode}); see its output above"
    ops = report["operations"]
    # Every operation schemathesis loaded (it leaves out the one serving the document itself,
    # GET /openapi.json, which the SDK test covers): tested, none skipped or errored.
    assert ops["selected"] == ops["total"] and ops["tested"] == ops["selected"], ops
    assert ops["errored"] == 0 and ops["skipped"] == 0, ops
    assert cases["generated"] > 0
