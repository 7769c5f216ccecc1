"""Instances on a real Redis Cluster: sharded pub/sub per room, the publish
script on the room's shard, one order per room across instances."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from ..conftest import StartServer
from ..helpers import WAIT, Client, RunningServer, connect
from ..redis_cluster import RedisClusterProcesses, cluster_cli, redis_cluster, rooms_on_every_shard
from ..redis_helpers import FAST_RECONNECT, wait_connected


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    """One cluster for this module's tests: none of them changes its topology."""
    with redis_cluster(Path(tmp_path_factory.mktemp("cluster"))) as processes:
        yield processes


async def start_cluster_instances(
    start_server: StartServer, cluster: RedisClusterProcesses, count: int
) -> list[RunningServer]:
    servers = [
        await start_server(redis_cluster_url=cluster.url, **FAST_RECONNECT) for _ in range(count)
    ]
    for server in servers:
        await wait_connected(server)
    return servers


async def subscribe(client: Client, room: str) -> None:
    await client.send({"type": "subscribe", "room": room})
    assert (await client.receive_type("subscribed"))["room"] == room


async def test_rooms_on_every_shard_keep_one_order_on_every_instance(
    start_server: StartServer, cluster: RedisClusterProcesses
) -> None:
    rooms = rooms_on_every_shard(cluster)
    servers = await start_cluster_instances(start_server, cluster, 3)
    per_room = 12
    async with AsyncExitStack() as stack:
        clients = []
        for server in servers:
            client = await stack.enter_async_context(connect(server.url(rooms[0])))
            for room in rooms[1:]:
                await subscribe(client, room)
            clients.append(client)
        seen: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))

        async def send_all(index: int, client: Client) -> None:
            for n in range(per_room):
                for room in rooms:
                    await client.send({"room": room, "body": f"{index}:{n}"})

        async def receive_all(index: int, client: Client) -> None:
            total = per_room * len(clients) * len(rooms)
            while sum(map(len, seen[index].values())) < total:
                frame = await client.receive_type("chat")
                seen[index][frame["room"]].append(frame)

        with trio.fail_after(WAIT * 2):
            async with trio.open_nursery() as nursery:
                for index, client in enumerate(clients):
                    nursery.start_soon(receive_all, index, client)
                    nursery.start_soon(send_all, index, client)

    for room in rooms:
        first = [(frame["seq"], frame["body"]) for frame in seen[0][room]]
        assert [seq for seq, _ in first] == list(range(1, per_room * len(clients) + 1))
        for index in range(1, len(clients)):
            assert [(f["seq"], f["body"]) for f in seen[index][room]] == first


async def test_a_room_lives_on_its_own_shard_only(
    start_server: StartServer, cluster: RedisClusterProcesses
) -> None:
    rooms = rooms_on_every_shard(cluster)
    (server,) = await start_cluster_instances(start_server, cluster, 1)
    async with connect(server.url(rooms[0])) as client:
        for room in rooms[1:]:
            await subscribe(client, room)
        await client.send({"room": rooms[1], "body": "kept on its shard"})
        assert isinstance((await client.receive_type("chat"))["seq"], int)
        owners = cluster.slot_owners()
        for room in rooms:
            channel = f"chat:room:{{{room}}}"
            owner = cluster.master_of(channel, owners)
            for node in {node for _, _, node in owners}:
                shard_channels = (await cluster_cli(node.port, "pubsub", "shardchannels")).split()
                assert (channel in shard_channels) == (node is owner), (room, node.port)
                # Nothing on classic pub/sub, which a cluster sends to every node.
                assert (await cluster_cli(node.port, "pubsub", "channels")).strip() == ""
            keys = (await cluster_cli(owner.port, "keys", f"chat:room:{{{room}}}:*")).split()
            assert f"{channel}:seq" in keys
