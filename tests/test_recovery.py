"""Recovery of the path's room from `since`/`epoch` in the upgrade's query,
on one instance without Redis (real server, real clients)."""

from __future__ import annotations

from .conftest import StartServer
from .helpers import Client, RunningServer, connect


async def say(client: Client, *bodies: str) -> list[dict[str, object]]:
    """Send each body and wait for it to come back: the chat frames, in order."""
    frames = []
    for body in bodies:
        await client.send({"body": body})
        frames.append(await client.receive_type("chat"))
    return frames


async def test_reconnecting_with_since_in_the_query_replays_what_was_missed(
    server: RunningServer,
) -> None:
    async with connect(server.url("q", user_id="bo")) as sender:
        async with connect(server.url("q", user_id="ann")) as ann:
            await say(sender, "one", "two")
            seen = [await ann.receive_type("chat") for _ in range(2)]
            epoch, last = ann.subscribed["epoch"], seen[-1]["seq"]
        await say(sender, "three", "four")
        query = {"user_id": "ann", "since": str(last), "epoch": epoch}
        async with connect(server.url("q", **query)) as ann:
            assert (ann.subscribed["recovered"], ann.subscribed["seq"]) == (True, 4)
            assert "reason" not in ann.subscribed
            missed = [await ann.receive_type("chat") for _ in range(2)]
            assert [(f["body"], f["seq"]) for f in missed] == [("three", 3), ("four", 4)]
            await say(sender, "five")
            chats = [f for f in await ann.drain_until_sync() if f["type"] == "chat"]
            assert [(f["body"], f["seq"]) for f in chats] == [("five", 5)]


async def test_the_default_room_recovers_from_the_query_too(server: RunningServer) -> None:
    async with connect(server.url()) as first:
        await say(first, "hello")
    query = {"since": "0", "epoch": first.subscribed["epoch"]}
    async with connect(server.url(**query)) as again:
        assert (again.subscribed["room"], again.subscribed["recovered"]) == ("lobby", True)
        assert (await again.receive_type("chat"))["body"] == "hello"


async def test_what_history_cannot_give_back_is_said_in_subscribed(
    start_server: StartServer,
) -> None:
    server = await start_server(history_size=2)
    async with connect(server.url("w")) as sender:
        await say(sender, "1", "2", "3")
        epoch = sender.subscribed["epoch"]
        cases = [
            ({"since": "0", "epoch": epoch}, "too_old"),  # 1 fell out of the window of 2
            ({"since": "1", "epoch": "another"}, "epoch_changed"),
            ({"since": "9", "epoch": epoch}, "epoch_changed"),  # ahead of the room
        ]
        for query, reason in cases:
            async with connect(server.url("w", **query)) as client:
                subscribed = client.subscribed
                assert (subscribed["recovered"], subscribed["reason"]) == (False, reason)
                assert (subscribed["epoch"], subscribed["seq"]) == (epoch, 3)
                assert await client.drain_until_sync() == []  # live messages only
        async with connect(server.url("w", since="1", epoch=epoch)) as client:
            assert client.subscribed["recovered"] is True
            assert [(await client.receive_type("chat"))["seq"] for _ in range(2)] == [2, 3]
