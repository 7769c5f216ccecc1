"""The publish API: a backend posts into a room with PUBLISH_API_KEY or a JWT
with scope `publish`; the message takes a client message's path (hook, seq,
history, safe retries). Real server, real sockets, raw HTTP requests."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
import trio

from chat_service.realtime import Broadcaster, Connection, HandlerConfig, Message

from .conftest import StartServer
from .helpers import WAIT, RunningServer, connect, raw_request
from .tokens import SECRET, mint

API_KEY = "publish-key-of-at-least-thirty-two-bytes"


async def post(
    server: RunningServer,
    room: str,
    payload: dict[str, Any] | bytes,
    *,
    credential: str | None = API_KEY,
    headers: str = "",
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST `payload` to the room's messages; the status, headers and JSON answer."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    auth = "" if credential is None else f"Authorization: Bearer {credential}\r\n"
    head = (
        f"POST /api/chat-api/rooms/{room}/messages HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{auth}{headers}\r\n"
    )
    status, answer_headers, answer = await raw_request(server.port, head.encode() + body)
    return status, answer_headers, json.loads(answer)


@pytest.fixture
async def publisher(start_server: StartServer) -> RunningServer:
    return await start_server(publish_api_key=API_KEY)


async def test_a_published_message_reaches_the_room_with_its_seq(
    publisher: RunningServer,
) -> None:
    async with connect(publisher.url("news")) as reader:
        await reader.send({"body": "from a client"})
        assert (await reader.receive_type("chat"))["seq"] == 1
        status, _, answer = await post(publisher, "news", {"body": "deploy done"})
        assert status == 201
        assert (answer["seq"], answer["room"]) == (2, "news")
        chat = await reader.receive_type("chat")
        assert chat["id"] == answer["id"]
        assert (chat["seq"], chat["user_id"], chat["body"]) == (2, "system", "deploy done")
        assert chat["ts"] == answer["ts"]
    # In history: a client recovering from seq 1 gets it.
    since = {"epoch": reader.subscribed["epoch"], "seq": 1}
    async with connect(publisher.url("lobby")) as late:
        await late.send({"type": "subscribe", "room": "news", "since": since})
        assert (await late.receive_type("subscribed"))["recovered"] is True
        assert (await late.receive_type("chat"))["id"] == answer["id"]


async def test_a_retry_with_the_same_client_msg_id_creates_nothing_new(
    publisher: RunningServer,
) -> None:
    message = {"body": "bot reply", "user_id": "helpbot", "client_msg_id": "req-41"}
    async with connect(publisher.url("help")) as reader:
        status, _, first = await post(publisher, "help", message)
        assert status == 201
        status, _, retry = await post(publisher, "help", message)
        assert status == 200
        assert retry["duplicate"] is True
        assert (retry["id"], retry["seq"]) == (first["id"], first["seq"])
        chats = [f for f in await reader.drain_until_sync() if f["type"] == "chat"]
        assert [(c["id"], c["user_id"]) for c in chats] == [(first["id"], "helpbot")]


@pytest.mark.parametrize(
    "credential",
    [None, "wrong-key-of-at-least-thirty-two-bytes!!", API_KEY[:-1], mint()],
    ids=["missing", "wrong", "prefix", "jwt-while-auth-is-off"],
)
async def test_a_wrong_credential_is_401(publisher: RunningServer, credential: str | None) -> None:
    async with connect(publisher.url("news")) as reader:
        status, headers, answer = await post(
            publisher, "news", {"body": "x"}, credential=credential
        )
        assert (status, answer["error"], headers["www-authenticate"]) == (
            401,
            "unauthorized",
            "Bearer",
        )
        assert [f for f in await reader.drain_until_sync() if f["type"] == "chat"] == []


async def test_without_a_publish_key_or_auth_nothing_may_publish(server: RunningServer) -> None:
    status, _, answer = await post(server, "news", {"body": "x"})
    assert (status, answer["error"]) == (401, "unauthorized")


@pytest.fixture
async def auth_publisher(start_server: StartServer) -> RunningServer:
    return await start_server(auth_enabled=True, auth_jwt_secret=SECRET)


async def test_a_jwt_with_scope_publish_publishes_as_its_sub(
    auth_publisher: RunningServer,
) -> None:
    async with connect(auth_publisher.url("news", token=mint())) as reader:
        token = mint(sub="newsbot", scope="read publish")
        status, _, answer = await post(auth_publisher, "news", {"body": "x"}, credential=token)
        assert (status, answer["user_id"]) == (201, "newsbot")
        assert (await reader.receive_type("chat"))["user_id"] == "newsbot"


@pytest.mark.parametrize(
    ("token", "error"),
    [
        (mint(sub="reader"), "forbidden"),
        (mint(scope="read"), "forbidden"),
        (mint(scope="publish", rooms=["team-*"]), "forbidden_room"),
    ],
    ids=["no-scope", "other-scope", "room-outside-its-claim"],
)
async def test_a_jwt_that_may_not_publish_here_is_403(
    auth_publisher: RunningServer, token: str, error: str
) -> None:
    status, _, answer = await post(auth_publisher, "news", {"body": "x"}, credential=token)
    assert (status, answer["error"]) == (403, error)


async def test_a_flood_is_429_per_credential(start_server: StartServer) -> None:
    server = await start_server(
        publish_api_key=API_KEY,
        auth_enabled=True,
        auth_jwt_secret=SECRET,
        publish_rate_per_second=0.01,
        publish_rate_burst=3,
    )
    for _ in range(3):
        assert (await post(server, "news", {"body": "x"}))[0] == 201
    status, headers, answer = await post(server, "news", {"body": "x"})
    assert (status, answer["error"]) == (429, "rate_limited")
    assert int(headers["retry-after"]) >= 1
    # Another credential has its own budget.
    bot = mint(sub="bot", scope="publish")
    assert (await post(server, "news", {"body": "x"}, credential=bot))[0] == 201


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{", "invalid_json"),
        (b"\xff", "invalid_json"),
        (b"[]", "invalid_message"),
        (b"{}", "invalid_message"),
        (b'{"body": ""}', "invalid_message"),
        (b'{"body": "x", "type": "subscribe"}', "invalid_message"),
        (b'{"body": "x", "room": "elsewhere"}', "invalid_message"),
        (b'{"body": "x", "client_msg_id": 7}', "invalid_message"),
        (b'{"body": "x", "user_id": "no spaces"}', "invalid_user_id"),
        (json.dumps({"body": "x" * 4097}).encode(), "body_too_long"),
    ],
)
async def test_a_bad_body_is_400(publisher: RunningServer, payload: bytes, error: str) -> None:
    status, _, answer = await post(publisher, "news", payload)
    assert (status, answer["error"]) == (400, error)


async def test_a_bad_room_is_400(publisher: RunningServer) -> None:
    status, _, answer = await post(publisher, "no%20spaces", {"body": "x"})
    assert (status, answer["error"]) == (400, "invalid_room")


async def test_a_body_over_the_limit_is_413_before_it_is_read(publisher: RunningServer) -> None:
    # The header alone says too much: answered without sending the body.
    head = (
        "POST /api/chat-api/rooms/news/messages HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Length: {10**9}\r\n"
        "Connection: close\r\n\r\n"
    )
    status, _, answer = await raw_request(publisher.port, head.encode())
    assert (status, json.loads(answer)["error"]) == (413, "too_large")
    # And a body that is too long as it comes (no Content-Length).
    status, _, answer = await raw_request(
        publisher.port,
        (
            "POST /api/chat-api/rooms/news/messages HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: Bearer {API_KEY}\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + b"10000\r\n"
        + b"x" * 0x10000
        + b"\r\n1\r\nx\r\n0\r\n\r\n",
    )
    assert (status, json.loads(answer)["error"]) == (413, "too_large")


async def test_the_on_message_hook_sees_backend_messages(start_server: StartServer) -> None:
    async def shout(conn: Connection, message: Message) -> Message | None:
        if message.body == "drop me":
            return None
        return replace(message, body=message.body.upper())

    def hooks(broadcaster: Broadcaster) -> HandlerConfig:
        return HandlerConfig(broadcaster, on_message=shout)

    server = await start_server(publish_api_key=API_KEY, make_handler_config=hooks)
    async with connect(server.url("news")) as reader:
        assert (await post(server, "news", {"body": "quiet"}))[0] == 201
        assert (await reader.receive_type("chat"))["body"] == "QUIET"
        status, _, answer = await post(server, "news", {"body": "drop me"})
        assert (status, answer["error"]) == (403, "dropped")


async def test_a_refusal_keeps_the_connection_reusable(publisher: RunningServer) -> None:
    """The body is read before any answer: a backend's next request on the
    same connection, after a 401, is served."""
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", publisher.port)
        async with stream:
            body = b'{"body": "x"}'
            head = (
                "POST /api/chat-api/rooms/news/messages HTTP/1.1\r\nHost: test\r\n"
                f"Content-Length: {len(body)}\r\nAuthorization: Bearer "
            )
            await stream.send_all(f"{head}wrong\r\n\r\n".encode())
            # The server waits for the body (it is in this process: all idle).
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(body)
            answers = b""
            while b"unauthorized" not in answers:
                answers += await stream.receive_some(65536)
            await stream.send_all(f"{head}{API_KEY}\r\n\r\n".encode() + body)
            while b'"seq"' not in answers:
                answers += await stream.receive_some(65536)
            assert re.findall(rb"HTTP/1\.1 (\d{3})", answers) == [b"401", b"201"]


async def test_the_body_limit_is_max_message_bytes(start_server: StartServer) -> None:
    server = await start_server(publish_api_key=API_KEY, max_message_bytes=1000)
    padding = "x" * 1000
    status, _, answer = await post(server, "news", {"body": "hi", "pad": padding})
    assert (status, answer["error"]) == (413, "too_large")
    status, _, answer = await post(server, "news", {"body": "hi"})
    assert status == 201, answer
