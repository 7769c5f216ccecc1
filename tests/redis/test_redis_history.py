"""Sequence numbers, history and safe retries across instances on a real
redis-server: the publish script's one order, its keys, its dedupe."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import trio
from pytest_redis.executor import RedisExecutor

from ..conftest import StartServer
from ..helpers import WAIT, Client, connect, room_history
from ..redis_helpers import redis_client, start_instances, tcp_url


async def test_seq_has_no_gap_on_any_client_of_three_instances(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    servers = await start_instances(start_server, tcp_url(redis_server), 3)
    per_sender = 40
    async with (
        connect(servers[0].url("r")) as c0,
        connect(servers[1].url("r")) as c1,
        connect(servers[2].url("r")) as c2,
        connect(servers[2].url("r")) as c3,
    ):
        clients = [c0, c1, c2, c3]
        seen: dict[int, list[dict[str, Any]]] = defaultdict(list)

        async def send_all(index: int, client: Client) -> None:
            for n in range(per_sender):
                await client.send({"body": f"{index}:{n}"})

        async def receive_all(index: int, client: Client) -> None:
            while len(seen[index]) < per_sender * len(clients):
                seen[index].append(await client.receive_type("chat"))

        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                for index, client in enumerate(clients):
                    nursery.start_soon(receive_all, index, client)
                    nursery.start_soon(send_all, index, client)

    total = per_sender * len(clients)
    for index in range(len(clients)):
        assert [frame["seq"] for frame in seen[index]] == list(range(1, total + 1))
        assert [frame["id"] for frame in seen[index]] == [frame["id"] for frame in seen[0]]
    async with redis_client(redis_server) as redis:
        assert await redis.get("chat:room:{r}:seq") == str(total)
        assert await redis.xlen("chat:room:{r}:history") == total
        assert await redis.get("chat:room:{r}:epoch") == c0.subscribed["epoch"]
        for key in ("seq", "epoch", "history"):
            assert await redis.ttl(f"chat:room:{{r}}:{key}") > 0, key


async def test_a_retry_after_reconnecting_elsewhere_appears_once(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2)
    async with connect(a.url("d", user_id="ann")) as reader:
        async with connect(a.url("d", user_id="bo")) as sender:
            await sender.send({"body": "hello", "client_msg_id": "m1"})
            original = await sender.receive_type("chat")
        async with connect(b.url("d", user_id="bo")) as sender:
            await sender.send({"body": "hello", "client_msg_id": "m1"})
            assert await sender.receive_type("chat") == original | {"duplicate": True}
            await sender.send({"body": "later"})
            assert (await sender.receive_type("chat"))["seq"] == original["seq"] + 1
        chats = [f for f in await reader.drain_until_sync() if f["type"] == "chat"]
        assert [(f["body"], f["seq"]) for f in chats] == [("hello", 1), ("later", 2)]
    for server in (a, b):
        assert await room_history(server.port, "d") == chats
    async with redis_client(redis_server) as redis:
        assert await redis.xlen("chat:room:{d}:history") == 2


async def test_history_off_still_numbers_messages(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    (server,) = await start_instances(start_server, tcp_url(redis_server), 1, history_ttl=0)
    async with connect(server.url("off", user_id="u")) as client:
        for _ in range(2):
            await client.send({"body": "x", "client_msg_id": "same"})
        frames = [await client.receive_type("chat") for _ in range(2)]
        assert [(f["seq"], f.get("duplicate")) for f in frames] == [(1, None), (2, None)]
    async with redis_client(redis_server) as redis:
        assert await redis.exists(["chat:room:{off}:history", "chat:room:{off}:dedupe"]) == 0
        assert await redis.get("chat:room:{off}:seq") == "2"
