"""Rooms on one socket across instances on a real redis-server: each
subscribed room is really subscribed, and only while it has local members."""

from __future__ import annotations

import trio
from pytest_redis.executor import RedisExecutor

from ..conftest import StartServer
from ..helpers import connect
from ..redis_helpers import fence, start_instances, subscribers, tcp_url


async def test_subscribed_means_subscribed_for_every_room(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2)
    rooms = [f"s{n}" for n in range(20)]
    async with connect(a.url("home")) as multi, connect(b.url("home")) as sender:
        for room in rooms:
            # The room is new on a: `subscribed` must wait for a's SUBSCRIBE,
            # or the message b publishes right after it would be missed.
            await sender.send({"type": "subscribe", "room": room})
            await sender.receive_type("subscribed")
            await multi.send({"type": "subscribe", "room": room})
            assert (await multi.receive_type("subscribed"))["room"] == room
            await sender.send({"room": room, "body": f"first in {room}"})
            for client in (multi, sender):
                chat = await client.receive_type("chat")
                assert (chat["room"], chat["body"]) == (room, f"first in {room}")


async def test_upstream_subscriptions_follow_subscribe_and_unsubscribe(
    start_server: StartServer, redis_server: RedisExecutor, nursery: trio.Nursery
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2)
    async with connect(a.url("home")) as client, connect(b.url("x")):
        assert await subscribers(redis_server, "x") == 1
        await client.send({"type": "subscribe", "room": "x"})
        await client.receive_type("subscribed")
        assert await subscribers(redis_server, "x") == 2
        await client.send({"type": "unsubscribe", "room": "x"})
        await client.receive_type("unsubscribed")
        await fence(a, nursery)
        assert await subscribers(redis_server, "x") == 1, "a kept x without members"
        await client.send({"type": "unsubscribe", "room": "home"})
        await client.receive_type("unsubscribed")
        await fence(a, nursery)
        assert await subscribers(redis_server, "home") == 0, "a kept its path room"
