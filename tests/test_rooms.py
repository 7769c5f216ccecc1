"""Several rooms on one socket: subscribe, unsubscribe, chat to a room, the
per-socket limit, and what the hub holds (real server, real clients)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from .conftest import StartServer
from .helpers import Client, RunningServer, connect


async def subscribe(client: Client, room: str) -> dict[str, object]:
    await client.send({"type": "subscribe", "room": room})
    subscribed = await client.receive_type("subscribed")
    assert subscribed["room"] == room
    return subscribed


def chats(frames: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(frame["room"], frame["body"]) for frame in frames if frame["type"] == "chat"]


async def test_welcome_says_protocol_2_and_the_path_room_is_subscribed(
    server: RunningServer,
) -> None:
    async with connect(server.url("home", user_id="ann")) as client:
        assert client.welcome["protocol"] == 2
        subscribed = client.subscribed
        assert subscribed["room"] == "home"
        assert isinstance(subscribed["epoch"], str)
        assert subscribed["seq"] == 0
        assert "recovered" not in subscribed
        assert subscribed["presence"] == {
            "users": 1,
            "members": [{"user_id": "ann", "connections": 1}],
        }


async def test_one_socket_in_three_rooms_gets_exactly_their_messages(
    server: RunningServer,
) -> None:
    async with AsyncExitStack() as stack:
        multi = await stack.enter_async_context(connect(server.url("a")))
        await subscribe(multi, "b")
        await subscribe(multi, "c")
        senders = {
            room: await stack.enter_async_context(connect(server.url(room)))
            for room in ("a", "b", "c", "d")
        }
        for room, sender in senders.items():
            await sender.send({"body": f"to {room}"})
            await sender.receive_type("chat")  # its own copy: published
        assert chats(await multi.drain_until_sync()) == [
            ("a", "to a"),
            ("b", "to b"),
            ("c", "to c"),
        ]
        assert sorted(server.runtime.hub.room_names()) == ["a", "b", "c", "d"]

        await multi.send({"type": "unsubscribe", "room": "b"})
        assert await multi.receive() == {"type": "unsubscribed", "room": "b", "reason": "requested"}
        for sender in senders.values():
            await sender.send({"body": "again"})
            await sender.receive_type("chat")
        assert chats(await multi.drain_until_sync()) == [("a", "again"), ("c", "again")]


async def test_chat_goes_to_its_room_and_defaults_to_the_path_room(
    server: RunningServer,
) -> None:
    async with connect(server.url("p")) as sender, connect(server.url("q")) as in_q:
        await subscribe(sender, "q")
        await sender.send({"body": "to q", "room": "q", "client_msg_id": "m1"})
        await sender.send({"body": "to p"})
        assert chats(await sender.drain_until_sync()) == [("q", "to q"), ("p", "to p")]
        assert chats(await in_q.drain_until_sync()) == [("q", "to q")]


async def test_the_last_member_leaving_a_room_drops_it_from_the_hub(
    server: RunningServer,
) -> None:
    async with connect(server.url("stay")) as client:
        await subscribe(client, "brief")
        assert sorted(server.runtime.hub.room_names()) == ["brief", "stay"]
        await client.send({"type": "unsubscribe", "room": "brief"})
        await client.receive_type("unsubscribed")
        assert server.runtime.hub.room_names() == ["stay"]
        await subscribe(client, "later")
    assert server.runtime.hub.room_names() == []
    assert server.runtime.hub.connection_count() == 0


async def test_refusals_name_the_room_and_keep_the_connection(start_server: StartServer) -> None:
    server = await start_server(max_rooms_per_connection=3)
    async with connect(server.url("one")) as client:
        await subscribe(client, "two")
        await subscribe(client, "three")
        refusals = [
            ({"type": "subscribe", "room": "four"}, "too_many_rooms", "four"),
            ({"type": "subscribe", "room": "two"}, "invalid_message", "two"),
            ({"type": "unsubscribe", "room": "nine"}, "not_subscribed", "nine"),
            ({"body": "x", "room": "nine"}, "not_subscribed", "nine"),
        ]
        for frame, code, room in refusals:
            await client.send(frame)
            error = await client.receive()
            assert (error["type"], error["code"], error["room"]) == ("error", code, room)
        assert client.ws.closed is None
        await client.send({"type": "unsubscribe", "room": "one"})
        await client.receive_type("unsubscribed")
        await client.send({"body": "to the path room, left"})
        error = await client.receive()
        assert (error["code"], error["room"]) == ("not_subscribed", "one")
        await subscribe(client, "four")  # the limit counts current rooms
        assert sorted(server.runtime.hub.room_names()) == ["four", "three", "two"]


async def test_presence_in_subscribed_counts_local_members_per_user(
    server: RunningServer,
) -> None:
    async with AsyncExitStack() as stack:
        for user in ("bob", "bob", "cy"):
            await stack.enter_async_context(connect(server.url("room", user_id=user)))
        late = await stack.enter_async_context(connect(server.url("elsewhere", user_id="dee")))
        subscribed = await subscribe(late, "room")
        assert subscribed["presence"] == {
            "users": 3,
            "members": [
                {"user_id": "bob", "connections": 2},
                {"user_id": "cy", "connections": 1},
                {"user_id": "dee", "connections": 1},
            ],
        }
