"""Recovery across instances on a real redis-server: a client that vanished
reconnects elsewhere with `since` and misses nothing; what Redis lost or
trimmed is said in `subscribed`; the history endpoint reads Redis."""

from __future__ import annotations

from typing import Any

import trio
from pytest_redis.executor import RedisExecutor

from ..conftest import StartServer
from ..helpers import WAIT, Client, RunningServer, connect, get_json, room_history
from ..redis_helpers import start_instances, tcp_url, wait_connected

ROOM = "hall"


async def receive_chats(client: Client, count: int) -> list[dict[str, Any]]:
    return [await client.receive_type("chat") for _ in range(count)]


def recover_url(server: RunningServer, last: dict[str, Any], epoch: str) -> str:
    return server.url(ROOM, since=str(last["seq"]), epoch=epoch)


async def test_a_vanished_client_recovers_everything_on_another_instance(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2)
    per_sender, senders = 60, 2
    total = per_sender * senders
    async with (
        connect(a.url(ROOM)) as observer,
        connect(a.url(ROOM)) as sender_a,
        connect(b.url(ROOM)) as sender_b,
    ):
        victim_seen: list[dict[str, Any]] = []
        joined, vanished = trio.Event(), trio.Event()

        async def send(client: Client, name: str) -> None:
            await joined.wait()
            for n in range(per_sender):
                await client.send({"body": f"{name}{n}"})
                if n == per_sender // 2:
                    await vanished.wait()  # the rest while the victim is gone and back

        async def victim() -> None:
            async with connect(a.url(ROOM)) as client:
                epoch = client.subscribed["epoch"]
                joined.set()
                victim_seen.extend(await receive_chats(client, 10))
                await client.reset()  # mid-stream: more frames were on their way
            vanished.set()
            async with connect(recover_url(b, victim_seen[-1], epoch)) as client:
                assert client.subscribed["recovered"] is True, client.subscribed
                victim_seen.extend(await receive_chats(client, total - len(victim_seen)))
                assert [f for f in await client.drain_until_sync() if f["type"] == "chat"] == []

        with trio.fail_after(WAIT * 3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(victim)
                nursery.start_soon(send, sender_a, "a")
                nursery.start_soon(send, sender_b, "b")
                reference = await receive_chats(observer, total)

    assert [f["seq"] for f in reference] == list(range(1, total + 1))
    assert victim_seen == reference, "each message once, in seq order, across the reset"


async def test_redis_restarted_empty_is_a_new_epoch_not_a_recovery(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2)
    async with connect(a.url(ROOM)) as client:
        for body in ("one", "two"):
            await client.send({"body": body})
        last = (await receive_chats(client, 2))[-1]
        old_epoch = client.subscribed["epoch"]

    await trio.to_thread.run_sync(redis_server.kill)
    await wait_connected(b, False)
    path = f"/api/chat-api/rooms/{ROOM}/messages"
    status, _, body = await get_json(b.port, path)
    assert (status, body["error"]) == (503, "unavailable")
    async with connect(recover_url(b, last, old_epoch)) as client:
        # Nothing can be read: not recovered, and no position to give.
        subscribed = client.subscribed
        assert (subscribed["recovered"], subscribed["reason"]) == (False, "unavailable")
        assert (subscribed["epoch"], subscribed["seq"]) == (None, None)

    await trio.to_thread.run_sync(redis_server.start)  # same port, empty
    await wait_connected(b)
    async with connect(recover_url(b, last, old_epoch)) as client:
        subscribed = client.subscribed
        assert (subscribed["recovered"], subscribed["reason"]) == (False, "epoch_changed")
        assert subscribed["epoch"] != old_epoch
        assert subscribed["seq"] == 0
        await client.send({"body": "three"})
        assert (await client.receive_type("chat"))["seq"] == 1  # counting again, new epoch
    status, _, page = await get_json(b.port, path)
    assert (status, page["epoch"], [m["body"] for m in page["messages"]]) == (
        200,
        subscribed["epoch"],
        ["three"],
    )


async def test_since_older_than_the_window_is_too_old(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2, history_size=5)
    async with connect(a.url(ROOM)) as client:
        for n in range(20):
            await client.send({"body": str(n)})
        frames = await receive_chats(client, 20)
        epoch = client.subscribed["epoch"]
    async with connect(recover_url(b, frames[1], epoch)) as late:
        subscribed = late.subscribed
        assert (subscribed["recovered"], subscribed["reason"]) == (False, "too_old")
        assert subscribed["seq"] == 20
        assert await late.drain_until_sync() == []  # live messages only
    async with connect(recover_url(b, frames[-4], epoch)) as recent:
        assert recent.subscribed["recovered"] is True
        assert await receive_chats(recent, 3) == frames[-3:]


async def test_the_history_endpoint_pages_redis_back_to_the_first_message(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2)
    async with connect(a.url(ROOM)) as on_a, connect(b.url(ROOM)) as on_b:
        for n in range(25):
            await (on_a if n % 2 else on_b).send({"body": str(n)})
        delivered = await receive_chats(on_a, 25)
    for server in (a, b):
        assert await room_history(server.port, ROOM, limit=7) == delivered
