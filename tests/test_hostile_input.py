"""Hostile input end to end: every frame gets the protocol's answer, the
connection (or only that connection) goes on, nothing is logged at error
level, and bodies reach the room exactly as sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import trio

from .helpers import WAIT, RunningServer, connect, raw_request, raw_upgrade
from .raw_websocket import TEXT, raw_websocket, read_until_closed


@pytest.fixture(autouse=True)
def no_error_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Hostile input is answered, never logged as a server error."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert errors == []


DEEP = 2_000  # past Python's JSON recursion limit, far below MAX_MESSAGE_BYTES


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("", "invalid_json"),
        (" ", "invalid_json"),
        ("\x00", "invalid_json"),
        ('{"body":"a\x00b"}', "invalid_json"),  # raw control characters are not JSON
        ('{"body":"a\nb"}', "invalid_json"),
        ('\ufeff{"body":"x"}', "invalid_json"),
        ("[" * 60_000, "invalid_json"),
        ('{"type":"ping","data":' + "[" * DEEP + "]" * DEEP + "}", "invalid_json"),
        ('{"body":"x","n":' + "9" * 5000 + "}", "invalid_json"),
        ('{"body":"x","n":1e400}', "invalid_json"),
        ('{"body":"x","n":NaN}', "invalid_json"),
        ('{"body":"x","n":-Infinity}', "invalid_json"),
        ("null", "invalid_message"),
        ('{"body":null}', "invalid_message"),
        ('{"body":{"html":"<b>"}}', "invalid_message"),
        ('{"body":["a"]}', "invalid_message"),
        ('{"body":true}', "invalid_message"),
        ('{"body":"a","body":"b"}', "invalid_message"),
        ('{"body":"\\ud800"}', "invalid_message"),
        ('{"body":"x","client_msg_id":"\\udfff"}', "invalid_message"),
        ('{"type":null,"body":"x"}', "invalid_message"),
        ('{"type":"welcome","body":"x"}', "unknown_type"),
        ('{"type":"chat\\u0000","body":"x"}', "unknown_type"),
    ],
)
async def test_hostile_text_frame_gets_error_and_connection_lives(
    server: RunningServer, frame: str, code: str
) -> None:
    async with connect(server.url("h")) as client, connect(server.url("h")) as neighbour:
        await client.send(frame)
        error = await client.receive_type("error")
        assert error["code"] == code
        await client.send({"body": "still here"})
        assert (await client.receive_type("chat"))["body"] == "still here"
        chats = [f["body"] for f in await neighbour.drain_until_sync() if f["type"] == "chat"]
        assert chats == ["still here"]


@pytest.mark.parametrize("frame", [b"", b"\x00", b'{"body":"binary json"}'])
async def test_binary_frames_even_empty_are_refused(server: RunningServer, frame: bytes) -> None:
    async with connect(server.url("bin")) as client:
        await client.send(frame)
        assert (await client.receive_type("error"))["code"] == "binary_not_supported"
        await client.send({"body": "still here"})
        assert (await client.receive_type("chat"))["body"] == "still here"


@pytest.mark.parametrize(
    "body",
    [
        "<script>alert(1)</script>",
        "&lt;b&gt; &amp; <!-- -->",
        "NUL\u0000in\u0001the\u001fmiddle\u007f",
        "tab\tcr\rlf\nend",
        "\u2028line and paragraph separators\u2029",
        "\u202eright-to-left override",
        "\ufeffbyte order mark",
        "zero\u200bwidth\u200djoiner",
        "emoji \U0001f469\u200d\U0001f469\u200d\U0001f467 and astral \U0001d54f",
        "\\u0041 is not unescaped twice",
        "  leading and trailing spaces  ",
        '{"type":"chat","body":"json inside"}',
    ],
)
@pytest.mark.parametrize("ascii_escapes", [True, False])
async def test_body_is_delivered_exactly_as_sent(
    server: RunningServer, body: str, ascii_escapes: bool
) -> None:
    async with connect(server.url("b")) as sender, connect(server.url("b")) as reader:
        await sender.send(json.dumps({"body": body}, ensure_ascii=ascii_escapes))
        assert (await reader.receive_type("chat"))["body"] == body


async def test_unknown_and_spoofed_fields_are_ignored(server: RunningServer) -> None:
    async with connect(server.url("s", user_id="mallory")) as sender:
        async with connect(server.url("other")) as elsewhere:
            await sender.send({"body": "hi", "room": "other"})  # not subscribed there
            refused = await sender.receive_type("error")
            assert (refused["code"], refused["room"]) == ("not_subscribed", "other")
            await sender.send(
                {
                    "body": "hi",
                    "html": "<b>bold</b>",
                    "client_id": "forged",
                    "user_id": "admin",
                    "id": "forged",
                    "ts": 0,
                }
            )
            chat = await sender.receive_type("chat")
            assert set(chat) == {"type", "id", "room", "client_id", "user_id", "body", "ts"} | (
                {"seq"} if "seq" in chat else set()
            )
            assert (chat["room"], chat["user_id"]) == ("s", "mallory")
            assert chat["client_id"] == sender.client_id
            assert chat["id"] != "forged"
            assert chat["ts"] > 0
            assert await elsewhere.drain_until_sync() == []


async def test_invalid_utf8_in_a_text_frame_fails_only_that_connection(
    server: RunningServer,
) -> None:
    async with connect(server.url("u")) as neighbour:
        async with raw_websocket(server.port, "/api/chat-api/ws/u") as raw:
            await raw.send_frame(TEXT, b'{"body":"\xff\xfe"}')
            # RFC 6455 8.1: the connection is failed, with 1007 first
            # (transport.FailingWSStream sends what Hypercorn 0.18 would not).
            assert await raw.close_code() == 1007
        await neighbour.send({"body": "unaffected"})
        assert (await neighbour.receive_type("chat"))["body"] == "unaffected"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/api/chat-api/ws/%C3%A9t%C3%A9", "invalid_room"),
        ("/api/chat-api/ws/a%00b", "invalid_room"),
        ("/api/chat-api/ws/%3Cscript%3E", "invalid_room"),
        ("/api/chat-api/ws?user_id=%00", "invalid_user_id"),
        ("/api/chat-api/ws?user_id=" + "u" * 65, "invalid_user_id"),
        ("/api/chat-api/ws?user_id=", "invalid_user_id"),
    ],
)
async def test_names_outside_the_alphabet_are_refused_before_the_upgrade(
    server: RunningServer, path: str, error: str
) -> None:
    status, _, body = await raw_upgrade(server.port, path)
    assert (status, json.loads(body)["error"]) == (400, error)


_H2C_UPGRADE = (
    b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
)
# The HTTP/2 connection preface, then an empty SETTINGS frame (RFC 9113 3.4).
_H2_PRIOR_KNOWLEDGE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


async def test_h2c_upgrade_is_answered_in_http_1_1(server: RunningServer) -> None:
    status, headers, body = await raw_request(server.port, _H2C_UPGRADE)
    assert status == 200
    assert "upgrade" not in headers
    assert json.loads(body)["status"] == "ok"


async def test_http2_prior_knowledge_gets_no_http2(server: RunningServer) -> None:
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(_H2_PRIOR_KNOWLEDGE)
        answer = await read_until_closed(stream)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:40]
