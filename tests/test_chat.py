"""One instance end to end: real Hypercorn on a real socket, real WebSocket clients."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import pytest
import trio

from chat_service.realtime import Broadcaster, Connection, HandlerConfig, Message

from .conftest import StartServer
from .helpers import RunningServer, connect, raw_request, raw_upgrade


async def test_upgrade_is_counted_and_welcomed(server: RunningServer) -> None:
    async with connect(server.url(user_id="alice")) as client:
        assert client.welcome["room"] == "lobby"
        assert client.welcome["user_id"] == "alice"
        assert client.welcome["heartbeat_interval"] == 25.0
        assert server.runtime.hub.connection_count() == 1
        async with connect(server.url("r1")) as other:
            assert other.welcome["room"] == "r1"
            assert other.welcome["user_id"] == "anonymous"
            assert server.runtime.hub.connection_count() == 2


async def test_message_reaches_every_member_once_sender_included(server: RunningServer) -> None:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(server.url("r"))) for _ in range(3)]
        sender = clients[1]
        await sender.send({"body": "hello", "client_msg_id": "m1"})
        for client in clients:
            frames = [f for f in await client.drain_until_sync() if f["type"] == "chat"]
            assert len(frames) == 1
            chat = frames[0]
            assert chat["body"] == "hello"
            assert chat["client_msg_id"] == "m1"
            assert chat["client_id"] == sender.client_id
            assert chat["room"] == "r"
            assert isinstance(chat["id"], str)
            assert chat["id"]
            assert isinstance(chat["ts"], int)


async def test_rooms_are_isolated(server: RunningServer) -> None:
    async with connect(server.url("a")) as in_a, connect(server.url("b")) as in_b:
        await in_a.send({"body": "only for a"})
        assert (await in_a.receive_type("chat"))["body"] == "only for a"
        assert await in_b.drain_until_sync() == []


async def test_one_senders_messages_keep_their_order(server: RunningServer) -> None:
    async with connect(server.url("o")) as sender, connect(server.url("o")) as reader:
        for n in range(50):
            await sender.send({"body": str(n)})
        bodies = [(await reader.receive_type("chat"))["body"] for _ in range(50)]
        assert bodies == [str(n) for n in range(50)]


async def test_presence_events_can_be_switched_off(start_server: StartServer) -> None:
    server = await start_server(presence_events=False, presence_interval=0.01)
    async with connect(server.url("q", user_id="first")) as first:
        async with connect(server.url("q", user_id="second")):
            pass
        await first.send({"body": "after a few intervals"})
        assert (await first.receive_type("chat"))["body"] == "after a few intervals"
        assert await first.drain_until_sync(skip_presence=False) == []


async def test_client_ping_gets_pong(server: RunningServer) -> None:
    async with connect(server.url()) as client:
        await client.send({"type": "ping", "data": {"n": 1}})
        assert await client.receive() == {"type": "pong", "data": {"n": 1}}
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}


async def test_server_sends_heartbeat_pings(start_server: StartServer) -> None:
    server = await start_server(heartbeat_interval=0.05, heartbeat_timeout=5.0)
    async with connect(server.url()) as client:
        for _ in range(3):
            assert await client.receive(skip_pings=False) == {"type": "ping"}
            await client.send({"type": "pong"})


async def test_silent_client_is_closed_with_4000(start_server: StartServer) -> None:
    server = await start_server(heartbeat_interval=0.05, heartbeat_timeout=0.3)
    async with connect(server.url()) as silent, connect(server.url()) as talker:
        async with trio.open_nursery() as nursery:

            async def answer_heartbeats() -> None:
                while True:  # each answer resets its deadline, so it stays open
                    if (await talker.receive(skip_pings=False))["type"] == "ping":
                        await talker.send({"type": "pong"})

            nursery.start_soon(answer_heartbeats)
            assert await silent.closed_code() == 4000
            nursery.cancel_scope.cancel()
        await talker.send({"type": "ping"})
        assert (await talker.receive_type("pong")) == {"type": "pong"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"type": "chat"}', "invalid_message"),
        ('{"body": ""}', "invalid_message"),
        ('{"body": 42}', "invalid_message"),
        ('{"type": "shout", "body": "x"}', "unknown_type"),
        (json.dumps({"body": "x" * 4097}), "body_too_long"),
        (b"\x00\x01binary", "binary_not_supported"),
    ],
)
async def test_bad_frame_gets_error_and_connection_lives(
    server: RunningServer, frame: str | bytes, code: str
) -> None:
    async with connect(server.url("bad")) as client, connect(server.url("bad")) as neighbour:
        await client.send(frame)
        error = await client.receive_type("error")
        assert error["code"] == code
        assert isinstance(error["detail"], str)
        assert error["detail"]
        await client.send({"body": "still here"})
        assert (await client.receive_type("chat"))["body"] == "still here"
        assert [f["body"] for f in await neighbour.drain_until_sync() if f["type"] == "chat"] == [
            "still here"
        ]


async def test_oversized_frame_is_closed_with_1009(start_server: StartServer) -> None:
    server = await start_server(max_message_bytes=1024)
    async with connect(server.url("big")) as client, connect(server.url("big")) as neighbour:
        await client.send(json.dumps({"body": "x" * 2000}))
        assert await client.closed_code() == 1009
        await neighbour.send({"body": "fine"})
        assert (await neighbour.receive_type("chat"))["body"] == "fine"


@pytest.mark.parametrize("path", ["/api/chat-api/ws/bad%20room", "/api/chat-api/ws/" + "x" * 65])
async def test_invalid_room_is_400_before_upgrade(server: RunningServer, path: str) -> None:
    status, headers, body = await raw_upgrade(server.port, path)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "invalid_room"
    assert server.runtime.hub.connection_count() == 0


async def test_invalid_user_id_is_400_before_upgrade(server: RunningServer) -> None:
    status, _, body = await raw_upgrade(server.port, "/api/chat-api/ws?user_id=a%2Fb")
    assert status == 400
    assert json.loads(body)["error"] == "invalid_user_id"


async def test_on_message_returning_none_drops_the_message(start_server: StartServer) -> None:
    async def drop_secrets(conn: Connection, message: Message) -> Message | None:
        return None if message.body == "secret" else message

    def hooks(broadcaster: Broadcaster) -> HandlerConfig:
        return HandlerConfig(broadcaster, on_message=drop_secrets)

    server = await start_server(make_handler_config=hooks)
    async with connect(server.url("d")) as sender, connect(server.url("d")) as reader:
        await sender.send({"body": "secret"})
        await sender.send({"body": "public"})
        chats = [f["body"] for f in await reader.drain_until_sync() if f["type"] == "chat"]
        assert chats == ["public"]


async def test_a_raising_hook_closes_only_its_connection_with_1011(
    start_server: StartServer,
) -> None:
    async def explode_on_boom(conn: Connection, message: Message) -> Message | None:
        if message.body == "boom":
            raise RuntimeError("hook failure")
        return message

    def hooks(broadcaster: Broadcaster) -> HandlerConfig:
        return HandlerConfig(broadcaster, on_message=explode_on_boom)

    server = await start_server(make_handler_config=hooks)
    async with connect(server.url("h")) as victim, connect(server.url("h")) as other:
        await victim.send({"body": "boom"})
        assert await victim.closed_code() == 1011
        await other.send({"body": "after"})
        assert (await other.receive_type("chat"))["body"] == "after"


async def test_batched_client_gets_newline_separated_frames(server: RunningServer) -> None:
    async with connect(server.url("bt", batch="1")) as batched, connect(server.url("bt")) as plain:
        for n in range(20):
            await plain.send({"body": str(n)})
        bodies: list[str] = []
        while len(bodies) < 20:
            for line in (await batched.receive_raw()).split("\n"):
                frame = json.loads(line)
                if frame["type"] == "chat":
                    bodies.append(frame["body"])
        assert bodies == [str(n) for n in range(20)]
        for _ in range(20):
            assert "\n" not in await plain.receive_raw()


async def test_health_and_readiness(server: RunningServer) -> None:
    status, _, body = await raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["tasks"] > 0
    status, _, body = await raw_request(server.port, b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200
    assert json.loads(body)["status"] == "ready"
