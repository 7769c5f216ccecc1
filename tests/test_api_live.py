"""The API documents are true of the running server: it serves them and the
docs page, refuses upgrades as the OpenAPI document says, and every message
of the AsyncAPI document behaves as documented over a real WebSocket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio

from chat_service.api.asyncapi import build_asyncapi
from chat_service.api.documents import render_asyncapi
from chat_service.api.spec import DOCS_ASSETS, DOCS_PATH, OPENAPI_PATH, build_openapi
from chat_service.realtime.schemas import CLIENT_FRAME_SCHEMA, DEFAULT_MAX_BODY_CHARS

from .conftest import StartServer
from .helpers import RunningServer, connect, raw_request, raw_upgrade
from .tokens import SECRET, mint

OPENAPI = build_openapi()
PUBLISH_KEY = "schemathesis-publish-key-of-32-bytes-or-more"
ASYNCAPI = build_asyncapi()
MESSAGES: dict[str, Any] = ASYNCAPI["components"]["messages"]


def message_keys(operation: str) -> set[str]:
    """The keys of the messages of one operation of the default-room channel."""
    refs = ASYNCAPI["operations"][f"defaultRoom.{operation}"]["messages"]
    return {ref["$ref"].rsplit("/", 1)[1] for ref in refs}


def example(key: str) -> dict[str, Any]:
    payload: dict[str, Any] = MESSAGES[key]["examples"][0]["payload"]
    return payload


def assert_is_message(key: str, frame: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(MESSAGES[key]["payload"]).validate(frame)


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    return await raw_request(port, request.encode("latin-1"))


async def test_served_documents_are_the_generated_ones(server: RunningServer) -> None:
    status, headers, body = await http_get(server.port, OPENAPI_PATH)
    assert (status, headers["content-type"]) == (200, "application/json")
    assert json.loads(body) == OPENAPI
    status, headers, body = await http_get(server.port, "/api/chat-api/asyncapi.yaml")
    assert (status, headers["content-type"]) == (200, "application/yaml")
    assert body.decode() == render_asyncapi()


class _Links(HTMLParser):
    """Every URL a page loads (src and href attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


async def test_docs_page_loads_everything_from_the_service(server: RunningServer) -> None:
    status, headers, body = await http_get(server.port, DOCS_PATH)
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    page = body.decode()
    assert "http:" not in page
    assert "https:" not in page
    assert f'url: "{OPENAPI_PATH}"' in page
    links = _Links()
    links.feed(page)
    assert sorted(links.urls) == sorted(f"{DOCS_PATH}/{asset}" for asset in DOCS_ASSETS)
    for url in links.urls:
        status, headers, body = await http_get(server.port, url)
        assert status == 200, url
        assert headers["content-type"].split(";")[0] == DOCS_ASSETS[url.rsplit("/", 1)[1]]
        assert int(headers["content-length"]) == len(body) > 0
    _, _, bundle = await http_get(server.port, f"{DOCS_PATH}/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle
    status, _, _ = await http_get(server.port, f"{DOCS_PATH}/swagger-initializer.js")
    assert status == 404


async def test_schemathesis_finds_no_failures_in_the_http_endpoints(
    start_server: StartServer, tmp_path: Path
) -> None:
    # With the publish key, so that the publish API is tested past its 401.
    server = await start_server(
        publish_api_key=PUBLISH_KEY, publish_rate_per_second=1000, publish_rate_burst=1000
    )
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run"),
        f"http://127.0.0.1:{server.port}{OPENAPI_PATH}",
        *("--header", f"Authorization: Bearer {PUBLISH_KEY}"),
        # The WebSocket endpoints need an upgrade, which schemathesis cannot make;
        # the tests below hold them to the document.
        *("--exclude-tag", "WebSocket"),
        *("--checks", "all"),
        *("--max-examples", "25"),
        *("--seed", "1"),
        *("--workers", "1"),
    ]
    with trio.fail_after(120):
        result = await trio.run_process(
            command, cwd=tmp_path, capture_stdout=True, stderr=subprocess.STDOUT, check=False
        )
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output
    assert "No issues found" in output, output


def _response(path: str, status: int) -> dict[str, Any]:
    response: dict[str, Any] = OPENAPI["paths"][path]["get"]["responses"][str(status)]
    return response


@pytest.mark.parametrize(
    ("settings", "draining", "path", "status", "error"),
    [
        ({}, False, "/api/chat-api/ws/general", 101, None),
        ({}, False, "/api/chat-api/ws?user_id=alice&batch=1", 101, None),
        ({}, False, "/api/chat-api/ws/no%20spaces", 400, "invalid_room"),
        ({}, False, "/api/chat-api/ws/general?user_id=a%2Fb", 400, "invalid_user_id"),
        ({}, False, "/api/chat-api/ws?user_id=", 400, "invalid_user_id"),
        ({}, False, "/api/chat-api/ws/general?since=3&epoch=e1", 101, None),
        ({}, False, "/api/chat-api/ws?since=0&epoch=", 101, None),
        ({}, False, "/api/chat-api/ws/general?since=-1&epoch=e1", 400, "invalid_since"),
        ({}, False, "/api/chat-api/ws/general?since=1.0&epoch=e1", 400, "invalid_since"),
        ({}, False, "/api/chat-api/ws/general?since=%2B1&epoch=e1", 400, "invalid_since"),
        ({}, False, "/api/chat-api/ws/general?since=&epoch=e1", 400, "invalid_since"),
        ({}, False, f"/api/chat-api/ws?since={2**53}&epoch=e1", 400, "invalid_since"),
        ({}, False, "/api/chat-api/ws/general?epoch=e1", 400, "invalid_since"),
        ({}, False, "/api/chat-api/ws/general?since=3", 400, "invalid_epoch"),
        ({}, False, f"/api/chat-api/ws/general?since=3&epoch={'e' * 65}", 400, "invalid_epoch"),
        (
            {"auth_enabled": True, "auth_jwt_secret": SECRET},
            False,
            "/api/chat-api/ws",
            401,
            "unauthorized",
        ),
        ({"max_connections": 0}, False, "/api/chat-api/ws/general", 503, "at_capacity"),
        ({}, True, "/api/chat-api/ws", 503, "shutting_down"),
    ],
)
async def test_upgrade_is_answered_as_the_openapi_document_says(
    start_server: StartServer,
    settings: dict[str, Any],
    draining: bool,
    path: str,
    status: int,
    error: str | None,
) -> None:
    server = await start_server(**settings)
    server.runtime.draining = draining
    answer, headers, body = await raw_upgrade(server.port, path)
    assert answer == status
    named_room = path.startswith("/api/chat-api/ws/")
    documented = _response("/api/chat-api/ws" + ("/{room}" if named_room else ""), status)
    if error is None:
        return
    assert headers["content-type"] == "application/json"
    refusal = json.loads(body)
    jsonschema.Draft202012Validator(documented["content"]["application/json"]["schema"]).validate(
        refusal
    )
    assert refusal["error"] == error
    for name, header in documented.get("headers", {}).items():
        jsonschema.Draft202012Validator(header["schema"]).validate(headers[name.lower()])


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://chat.example.com", 101),
        ("HTTPS://Chat.Example.COM", 101),
        (None, 101),  # not a browser: nothing to check
        ("https://evil.example", 403),
        ("null", 403),
    ],
)
async def test_allowed_origins_refuse_other_origins_before_the_upgrade(
    start_server: StartServer, origin: str | None, status: int
) -> None:
    server = await start_server(allowed_origins=("https://chat.example.com",))
    extra = "" if origin is None else f"Origin: {origin}\r\n"
    answer, _, body = await raw_upgrade(server.port, "/api/chat-api/ws/general", extra)
    assert answer == status
    if status == 403:
        _response("/api/chat-api/ws/{room}", 403)  # documented
        assert json.loads(body)["error"] == "forbidden_origin"


async def test_plain_get_of_a_websocket_endpoint_is_answered_as_documented(
    server: RunningServer,
) -> None:
    status, headers, _ = await http_get(server.port, "/api/chat-api/ws/general")
    assert status == 400
    media = headers["content-type"].split(";")[0]
    assert media in _response("/api/chat-api/ws/{room}", 400)["content"]


async def test_every_message_behaves_as_documented(start_server: StartServer) -> None:
    """Each client message example, sent to a real server, gets the documented
    answer; each server message is seen on the wire and matches its schema."""
    server = await start_server(
        heartbeat_interval=0.05, heartbeat_timeout=5.0, presence_interval=0.05
    )
    seen: dict[str, dict[str, Any]] = {}  # server message key -> a frame the server sent
    async with connect(server.url("general", user_id="alice")) as alice:
        seen["welcome"] = alice.welcome
        seen["subscribed"] = alice.subscribed
        async with connect(server.url("general", user_id="bob")) as bob:
            seen["presenceDiff"] = await alice.receive_presence()
            while {"user_id": "bob", "connections": 1} not in seen["presenceDiff"]["joins"]:
                seen["presenceDiff"] = await alice.receive_presence()

            # chatRequest: every member receives it, the sender included.
            await bob.send(example("chatRequest"))
            for member in (alice, bob):
                seen["chat"] = await member.receive_type("chat")
                assert seen["chat"]["body"] == example("chatRequest")["body"]
                assert seen["chat"]["client_msg_id"] == example("chatRequest")["client_msg_id"]
                assert seen["chat"]["client_id"] == bob.client_id

            # subscribe: answered with subscribed (this `since` is of no epoch the room has).
            await bob.send(example("subscribe"))
            resubscribed = await bob.receive()
            assert resubscribed["room"] == example("subscribe")["room"]
            assert (resubscribed["recovered"], resubscribed["reason"]) == (False, "epoch_changed")
            assert_is_message("subscribed", resubscribed)

            # unsubscribe: answered with unsubscribed.
            await bob.send(example("unsubscribe"))
            seen["unsubscribed"] = await bob.receive()
            assert seen["unsubscribed"]["room"] == example("unsubscribe")["room"]

            # clientPing: answered to the sender alone, data echoed.
            await bob.send(example("clientPing"))
            seen["pong"] = await bob.receive()
            assert seen["pong"] == {"type": "pong", "data": example("clientPing")["data"]}
            assert await alice.drain_until_sync() == []

            # clientPong: nothing comes back.
            await bob.send(example("clientPong"))
            assert await bob.drain_until_sync() == []

            await bob.send({"type": "shout"})
            seen["error"] = await bob.receive()
        left = await alice.receive_presence()
        while {"user_id": "bob"} not in left["leaves"]:
            left = await alice.receive_presence()
        while (frame := await alice.receive(skip_pings=False))["type"] != "ping":
            pass
        seen["heartbeat"] = frame

    assert set(seen) | TOKEN_MESSAGES == message_keys("send")
    assert message_keys("receive") == {
        "chatRequest",
        "subscribe",
        "unsubscribe",
        "clientPing",
        "clientPong",
        "refresh",
    }
    for key, frame in seen.items():
        assert_is_message(key, frame)


# The server's messages of live expiry (auth on), seen by the test below.
TOKEN_MESSAGES = {"tokenExpiring", "refreshed"}


async def test_token_messages_behave_as_documented(start_server: StartServer) -> None:
    server = await start_server(auth_enabled=True, auth_jwt_secret=SECRET, token_expiry_notice=3600)
    async with connect(server.url("general", token=mint())) as client:
        seen = {"tokenExpiring": await client.receive()}  # within the notice: at once
        assert seen["tokenExpiring"]["exp"] > time.time()
        await client.send(example("refresh") | {"token": mint(expires_in=7200)})
        seen["refreshed"] = await client.receive()
        assert seen["refreshed"]["exp"] > seen["tokenExpiring"]["exp"]
    assert set(seen) == TOKEN_MESSAGES
    for key, frame in seen.items():
        assert_is_message(key, frame)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("[]", "invalid_message"),
        ('"hello"', "invalid_message"),
        ("{}", "invalid_message"),
        ('{"body": ""}', "invalid_message"),
        ('{"body": 7}', "invalid_message"),
        ('{"type": 1, "body": "x"}', "invalid_message"),
        ('{"body": "x", "client_msg_id": 5}', "invalid_message"),
        (json.dumps({"body": "x", "client_msg_id": "c" * 65}), "invalid_message"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"body": "x", "room": "no spaces"}', "invalid_room"),
        ('{"type": "subscribe"}', "invalid_room"),
        ('{"type": "unsubscribe", "room": ""}', "invalid_room"),
        ('{"type": "refresh"}', "invalid_message"),
        ('{"type": "refresh", "token": ""}', "invalid_message"),
        ('{"type": "subscribe", "room": "r", "since": {"epoch": "e"}}', "invalid_message"),
        (
            '{"type": "subscribe", "room": "r", "since": {"epoch": "e", "seq": -1}}',
            "invalid_message",
        ),
        (json.dumps({"body": "x" * (DEFAULT_MAX_BODY_CHARS + 1)}), "body_too_long"),
    ],
)
async def test_a_frame_the_schema_rejects_gets_the_documented_error(
    server: RunningServer, frame: str, code: str
) -> None:
    assert not jsonschema.Draft7Validator(CLIENT_FRAME_SCHEMA).is_valid(json.loads(frame))
    async with connect(server.url("errors")) as client:
        await client.send(frame)
        error = await client.receive()
        assert_is_message("error", error)
        assert error["code"] == code
        assert await client.drain_until_sync() == []  # the connection lives on


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{", "invalid_json"),
        ('{"body": "a", "body": "b"}', "invalid_message"),
        (b"\x00", "binary_not_supported"),
    ],
)
async def test_frames_no_schema_can_describe_get_the_documented_error(
    server: RunningServer, frame: str | bytes, code: str
) -> None:
    async with connect(server.url("errors")) as client:
        await client.send(frame)
        error = await client.receive()
        assert_is_message("error", error)
        assert error["code"] == code
        assert await client.drain_until_sync() == []
