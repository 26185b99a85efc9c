"""The REST contract, exercised through an SDK generated from the live `/openapi.json`.

Run by `run.sh`, which starts a demo-server, generates the SDK (openapi-python-client) into a
temporary directory and sets:

- RC_BASE_URL     the server, e.g. http://127.0.0.1:PORT
- RC_SDK_DIR      the directory that holds the generated package `roomcast_client`
- RC_SPEC_FILE    the live OpenAPI document, saved to a file
- RC_WS_SCHEMA    openapi/ws-server-frames.schema.json (server WebSocket frames)
- RC_SEED_FILE    where to write the room and message ids that schemathesis then uses

Every REST call goes through the generated SDK; each response is also checked against the
live document (status documented, content type, body schema). The only raw traffic is the
WebSocket, which posts the messages that the history endpoint then pages through.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx
import jsonschema_rs
import pytest
from websockets.asyncio.client import connect as ws_connect

BASE_URL = os.environ["RC_BASE_URL"].rstrip("/")
sys.path.insert(0, os.environ["RC_SDK_DIR"])

from roomcast_client import AuthenticatedClient, Client  # noqa: E402
from roomcast_client.api.chat import (  # noqa: E402
    create_room,
    get_room,
    join_room,
    list_rooms,
    openapi_json,
    room_messages,
    ws_handler,
)
from roomcast_client.models import (  # noqa: E402
    CreateRoomRequest,
    HistoryMessage,
    HistoryResponse,
    JoinRoomRequest,
    JoinRoomResponse,
    Member,
    Problem,
    RoomDetails,
    RoomInfo,
    RoomSummary,
    User,
)
from roomcast_client.types import Response  # noqa: E402

with open(os.environ["RC_SPEC_FILE"], encoding="utf-8") as fd:
    SPEC: dict[str, Any] = json.load(fd)
with open(os.environ["RC_WS_SCHEMA"], encoding="utf-8") as fd:
    WS_SERVER_FRAME = jsonschema_rs.validator_for(json.load(fd))

RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
WS_TIMEOUT = 10.0


def as_datetime(value: Any) -> datetime:
    """`createdAt` as the SDK types it: a string today, a datetime if the document gains
    `format: date-time`."""
    if isinstance(value, datetime):
        return value
    assert isinstance(value, str) and RFC3339.match(value), f"not RFC 3339: {value!r}"
    return datetime.fromisoformat(value.replace("z", "Z"))


# ------------------------------------------------------------------ helpers


def sdk(token: str | None = None) -> Client | AuthenticatedClient:
    """A generated client that raises on any status the document does not list."""
    timeout = httpx.Timeout(10.0)
    if token is None:
        return Client(base_url=BASE_URL, raise_on_unexpected_status=True, timeout=timeout)
    return AuthenticatedClient(
        base_url=BASE_URL, token=token, raise_on_unexpected_status=True, timeout=timeout
    )


def conforms(resp: Response[Any], path: str, method: str) -> Any:
    """Checks an SDK response against the live document: the status is documented for the
    operation, the content type is the documented one, and the body matches its schema.
    Returns the parsed JSON body (or None for a body-less response)."""
    op = SPEC["paths"][path][method]
    status = str(int(resp.status_code))
    assert status in op["responses"], (
        f"{method.upper()} {path}: status {status} not documented "
        f"(documented: {sorted(op['responses'])}); body {resp.content[:300]!r}"
    )
    content = op["responses"][status].get("content")
    if not content:
        return None
    (media_type, media), = content.items()
    got = resp.headers.get("content-type", "").split(";")[0].strip()
    assert got == media_type, f"{method.upper()} {path} {status}: content-type {got!r}, spec {media_type!r}"
    body = json.loads(resp.content)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": SPEC.get("components", {}),
        **media["schema"],
    }
    errors = [
        f"{e.message} at {'/'.join(map(str, e.instance_path))}"
        for e in jsonschema_rs.validator_for(schema).iter_errors(body)
    ]
    assert not errors, f"{method.upper()} {path} {status}: body does not match the spec: {errors}; body {body!r}"
    return body


def assert_problem(resp: Response[Any], path: str, method: str, status: int, code: str) -> Problem:
    """A typed RFC 9457 error: documented status, problem+json, parsed as `Problem`."""
    assert int(resp.status_code) == status, f"expected {status}, got {int(resp.status_code)}: {resp.content!r}"
    conforms(resp, path, method)
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.parsed
    assert isinstance(problem, Problem), f"SDK parsed {type(problem).__name__}, not Problem"
    assert problem.status == status
    assert problem.code == code, f"code {problem.code!r}, expected {code!r}"
    assert problem.type_ == f"urn:roomcast:problem:{code}"
    assert problem.title and problem.detail
    return problem


def create_without_body() -> Response[Any]:
    """`POST /create-room` without a body: the SDK's default call (the body is optional)."""
    return create_room.sync_detailed(client=sdk())


def new_room(name: str | None = None) -> RoomInfo:
    if name is None:
        resp = create_without_body()
    else:
        resp = create_room.sync_detailed(client=sdk(), body=CreateRoomRequest(name=name))
    raw = conforms(resp, "/create-room", "post")
    assert RFC3339.match(raw["createdAt"]), raw
    assert int(resp.status_code) == 201, resp.content
    room = resp.parsed
    assert isinstance(room, RoomInfo)
    return room


def join(room_id: str, user: str) -> JoinRoomResponse:
    resp = join_room.sync_detailed(room_id, client=sdk(), body=JoinRoomRequest(user=user))
    conforms(resp, "/join-room/{roomId}", "post")
    assert int(resp.status_code) == 200, resp.content
    joined = resp.parsed
    assert isinstance(joined, JoinRoomResponse)
    return joined


def details(room_id: str) -> RoomDetails:
    resp = get_room.sync_detailed(room_id, client=sdk())
    conforms(resp, "/rooms/{roomId}", "get")
    assert int(resp.status_code) == 200, resp.content
    assert isinstance(resp.parsed, RoomDetails)
    return resp.parsed


def summaries() -> list[RoomSummary]:
    resp = list_rooms.sync_detailed(client=sdk())
    conforms(resp, "/rooms", "get")
    assert int(resp.status_code) == 200, resp.content
    assert isinstance(resp.parsed, list)
    assert all(isinstance(r, RoomSummary) for r in resp.parsed)
    return resp.parsed


def page(room_id: str, **query: Any) -> tuple[HistoryResponse, dict[str, Any]]:
    resp = room_messages.sync_detailed(room_id, client=sdk(), **query)
    raw = conforms(resp, "/rooms/{roomId}/messages", "get")
    assert int(resp.status_code) == 200, resp.content
    assert isinstance(resp.parsed, HistoryResponse)
    return resp.parsed, raw


def wait_for(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def ws_url(websocket_url: str) -> str:
    return "ws" + BASE_URL[len("http"):] + websocket_url


async def recv_frame(ws, want: str) -> dict[str, Any]:
    """Reads server frames (each checked against the WebSocket schema) until one of type `want`."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), WS_TIMEOUT)
        assert isinstance(raw, str), "server frames are JSON text frames"
        frame = json.loads(raw)
        errors = [e.message for e in WS_SERVER_FRAME.iter_errors(frame)]
        assert not errors, f"server frame does not match ws-server-frames.schema.json: {errors}: {frame}"
        assert frame["type"] != "error", f"unexpected error frame {frame}"
        if frame["type"] == want:
            return frame


# ------------------------------------------------------------------ the flow

# Filled by the tests below, in file order; the last one hands them to schemathesis.
STATE: dict[str, Any] = {}


def test_live_document_is_the_committed_one():
    resp = openapi_json.sync_detailed(client=sdk())
    doc = conforms(resp, "/openapi.json", "get")
    assert int(resp.status_code) == 200
    assert doc["openapi"].startswith("3.1")
    assert doc == SPEC, "the document served changed during the run"
    assert doc.get("servers") == [{"url": "/"}], doc.get("servers")


def test_asyncapi_document_when_served():
    """An addition to contract v1: GET /asyncapi.json, where the document lists it."""
    if "/asyncapi.json" not in SPEC["paths"]:
        pytest.skip("this server's document has no /asyncapi.json")
    import importlib

    asyncapi_json = importlib.import_module("roomcast_client.api.chat.asyncapi_json")
    resp = asyncapi_json.sync_detailed(client=sdk())
    doc = conforms(resp, "/asyncapi.json", "get")
    assert int(resp.status_code) == 200
    assert str(doc.get("asyncapi", "")).startswith("3."), doc.get("asyncapi")


def test_create_room():
    before = datetime.now(timezone.utc)
    room = new_room("Contract room")
    assert str(uuid.UUID(room.room_id)) == room.room_id.lower()
    assert room.name == "Contract room"
    created = as_datetime(room.created_at)
    assert abs((created - before).total_seconds()) < 60
    assert room.additional_properties == {}, "fields outside the spec"
    STATE["room"] = room


def test_create_room_without_a_body_gets_a_default_name():
    room = new_room(None)
    uuid.UUID(room.room_id)
    assert room.name.startswith("Room "), room.name


def test_sdk_default_create_room_call_sends_no_body():
    resp = create_room.sync_detailed(client=sdk())
    conforms(resp, "/create-room", "post")
    assert int(resp.status_code) == 201


def test_oversized_create_room_body_is_a_documented_problem():
    lenient = Client(base_url=BASE_URL, raise_on_unexpected_status=False, timeout=httpx.Timeout(30.0))
    resp = create_room.sync_detailed(client=lenient, body=CreateRoomRequest(name="x" * (3 * 1024 * 1024)))
    conforms(resp, "/create-room", "post")
    assert isinstance(resp.parsed, Problem)


@pytest.mark.parametrize("name", ["", " ", "x" * 65])
def test_create_room_rejects_a_bad_name(name):
    resp = create_room.sync_detailed(client=sdk(), body=CreateRoomRequest(name=name))
    assert_problem(resp, "/create-room", "post", 422, "invalid_value")


def test_join_room_as_a_guest():
    room = STATE["room"]
    joined = join(room.room_id, "alice")
    assert joined.room_id == room.room_id
    assert isinstance(joined.user, User)
    assert joined.user.name == "alice" and joined.user.id
    assert joined.token
    assert joined.websocket_url == f"/ws?token={joined.token}"
    bob = join(room.room_id, "bob")
    assert bob.user.id != joined.user.id, "every guest gets a new user id"
    STATE["alice"], STATE["bob"] = joined, bob


def test_join_room_with_a_token_keeps_the_identity():
    alice = STATE["alice"]
    resp = join_room.sync_detailed(STATE["room"].room_id, client=sdk(alice.token))
    conforms(resp, "/join-room/{roomId}", "post")
    assert int(resp.status_code) == 200, resp.content
    assert resp.parsed.user.id == alice.user.id
    assert resp.parsed.user.name == "alice"


def test_join_room_errors():
    path = "/join-room/{roomId}"
    room_id = STATE["room"].room_id
    unknown = str(uuid.uuid4())
    assert_problem(
        join_room.sync_detailed(unknown, client=sdk(), body=JoinRoomRequest(user="carol")),
        path, "post", 404, "room_not_found",
    )
    # No identity and no name: 401.
    assert_problem(
        join_room.sync_detailed(room_id, client=sdk(), body=JoinRoomRequest()),
        path, "post", 401, "unauthorized",
    )
    assert_problem(
        join_room.sync_detailed(room_id, client=sdk("not-a-token")),
        path, "post", 401, "unauthorized",
    )
    for name in ["", "x" * 33]:
        assert_problem(
            join_room.sync_detailed(room_id, client=sdk(), body=JoinRoomRequest(user=name)),
            path, "post", 422, "invalid_value",
        )


def test_list_rooms():
    rooms = summaries()
    ours = [r for r in rooms if r.room_id == STATE["room"].room_id]
    assert len(ours) == 1
    assert ours[0].name == "Contract room"
    assert ours[0].created_at == STATE["room"].created_at
    assert ours[0].online == 0
    stamps = [r.created_at for r in rooms]
    assert stamps == sorted(stamps, key=as_datetime), "rooms are oldest first"


def test_get_room_and_members():
    room = details(STATE["room"].room_id)
    assert room.room_id == STATE["room"].room_id
    assert room.name == "Contract room"
    assert room.created_at == STATE["room"].created_at
    members = {m.id: m for m in room.members}
    assert all(isinstance(m, Member) for m in room.members)
    for guest in (STATE["alice"], STATE["bob"]):
        assert guest.user.id in members
        assert members[guest.user.id].name == guest.user.name
        assert members[guest.user.id].online is False
    assert len(room.members) == 2, "joining again with a token adds no member"


def test_unknown_room_is_a_typed_404():
    unknown = str(uuid.uuid4())
    assert_problem(get_room.sync_detailed(unknown, client=sdk()), "/rooms/{roomId}", "get", 404, "room_not_found")
    assert_problem(
        room_messages.sync_detailed(unknown, client=sdk()),
        "/rooms/{roomId}/messages", "get", 404, "room_not_found",
    )
    assert_problem(
        room_messages.sync_detailed("not a uuid", client=sdk(), limit=5),
        "/rooms/{roomId}/messages", "get", 404, "room_not_found",
    )


def test_empty_history():
    history, raw = page(STATE["room"].room_id)
    assert history.messages == []
    assert history.next_before is None
    assert raw == {"messages": [], "nextBefore": None}


N_MESSAGES = 5


async def _post_messages(room_id: str, alice: JoinRoomResponse, bob: JoinRoomResponse):
    async with ws_connect(ws_url(alice.websocket_url)) as a, ws_connect(ws_url(bob.websocket_url)) as b:
        await a.send(json.dumps({"type": "join", "room": room_id}))
        joined = await recv_frame(a, "joined")
        assert joined["room"] == room_id
        await b.send(json.dumps({"type": "join", "room": room_id}))
        joined = await recv_frame(b, "joined")
        assert {m["id"] for m in joined["members"]} == {alice.user.id, bob.user.id}

        # Both online now, as REST sees it.
        online = await asyncio.to_thread(
            wait_for,
            lambda: all(m.online for m in details(room_id).members),
            "both members online",
        )
        assert online
        assert [r.online for r in summaries() if r.room_id == room_id] == [2]

        acks, delivered = [], []
        for i in range(N_MESSAGES):
            body = f"message {i} from alice ✓"
            await a.send(json.dumps({"type": "message", "room": room_id, "body": body, "clientMsgId": f"c{i}"}))
            ack = await recv_frame(a, "ack")
            assert ack["clientMsgId"] == f"c{i}"
            acks.append((ack, body))
            delivered.append(await recv_frame(b, "message"))
        return acks, delivered


def test_post_messages_over_the_websocket():
    room_id = STATE["room"].room_id
    acks, delivered = asyncio.run(_post_messages(room_id, STATE["alice"], STATE["bob"]))
    assert len({ack["id"] for ack, _ in acks}) == N_MESSAGES, "ids are unique"
    for (ack, body), frame in zip(acks, delivered):
        assert frame["id"] == ack["id"] and frame["body"] == body and frame["ts"] == ack["ts"]
        assert frame["from"] == {"id": STATE["alice"].user.id, "name": "alice"}
    STATE["acks"], STATE["delivered"] = acks, delivered
    # Everyone disconnected: presence goes back to nobody online.
    wait_for(lambda: not any(m.online for m in details(room_id).members), "members offline")
    wait_for(lambda: [r.online for r in summaries() if r.room_id == room_id] == [0], "online 0")


def test_history_pages_back_with_next_before():
    room_id = STATE["room"].room_id
    delivered = STATE["delivered"]
    pages, before, seen_cursors = [], None, []
    for _ in range(N_MESSAGES + 2):  # bounded: 3 pages expected
        query = {"limit": 2} if before is None else {"limit": 2, "before": before}
        history, raw = page(room_id, **query)
        assert 1 <= len(history.messages) <= 2
        pages.append((history, raw))
        before = history.next_before
        if before is None:
            break
        assert isinstance(before, str)
        seen_cursors.append(before)
    else:
        pytest.fail("nextBefore never became null")
    assert [len(h.messages) for h, _ in pages] == [2, 2, 1]

    # Pages come newest first; each page is oldest first; together they are the room's order.
    frames = [f for _, raw in reversed(pages) for f in raw["messages"]]
    assert frames == delivered, "history frames are the same JSON as the delivered frames, in order"
    messages = [m for h, _ in reversed(pages) for m in h.messages]
    for message, (ack, body) in zip(messages, STATE["acks"]):
        assert isinstance(message, HistoryMessage)
        assert message.type_ == "message"
        assert message.id == ack["id"] and message.ts == ack["ts"] and message.body == body
        assert message.room == room_id
        assert message.from_.id == STATE["alice"].user.id and message.from_.name == "alice"
        assert message.additional_properties == {}, "fields outside the spec"
        assert abs(message.ts / 1000 - time.time()) < 300, "ts is epoch milliseconds"
    # The cursor is the oldest message of the page it came with.
    for (history, _), cursor in zip(pages, seen_cursors):
        assert history.messages[0].id == cursor

    # Default limit (50) returns the whole history in one page.
    whole, raw = page(room_id)
    assert raw["messages"] == delivered and whole.next_before is None
    STATE["message_ids"] = [m.id for m in messages]


def test_history_errors():
    path = "/rooms/{roomId}/messages"
    room_id = STATE["room"].room_id
    for limit in (0, 201):
        assert_problem(room_messages.sync_detailed(room_id, client=sdk(), limit=limit), path, "get", 400, "bad_request")
    assert_problem(
        room_messages.sync_detailed(room_id, client=sdk(), before="not-a-message-id"),
        path, "get", 400, "bad_request",
    )
    # Limits inside 1..=200 are fine, a cursor at the oldest message gives an empty last page.
    history, _ = page(room_id, limit=200)
    assert len(history.messages) == N_MESSAGES
    oldest = STATE["message_ids"][0]
    history, raw = page(room_id, before=oldest)
    assert raw == {"messages": [], "nextBefore": None}


def test_websocket_endpoint_answers_plain_http_with_problems():
    path = "/ws"
    assert_problem(ws_handler.sync_detailed(client=sdk()), path, "get", 401, "unauthorized")
    assert_problem(ws_handler.sync_detailed(client=sdk(), token="forged"), path, "get", 401, "unauthorized")
    # A valid token on a request that is not an upgrade: 400.
    assert_problem(
        ws_handler.sync_detailed(client=sdk(), token=STATE["alice"].token), path, "get", 400, "bad_request"
    )


def test_hand_seed_to_schemathesis():
    """Writes the seeded room and its message ids for the schemathesis run that follows, so
    that its fuzzing also reads a non-empty history with valid cursors."""
    if "message_ids" not in STATE:
        pytest.skip("the history tests did not run (deselected?): schemathesis gets no seed")
    seed = {"roomId": STATE["room"].room_id, "messageIds": STATE["message_ids"]}
    with open(os.environ["RC_SEED_FILE"], "w", encoding="utf-8") as fd:
        json.dump(seed, fd)
