"""Instances on a real Redis Cluster: sharded pub/sub per room, the publish
script on the room's shard, one order per room across instances."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from chat_service.devtools.redis_cluster import (
    RedisClusterProcesses,
    cluster_cli,
    redis_cluster,
    rooms_on_every_shard,
)

from ..conftest import StartServer
from ..helpers import WAIT, Client, RunningServer, connect, raw_request
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


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[RedisClusterProcesses]:
    """A cluster of this test's own: the test changes its topology."""
    with redis_cluster(tmp_path) as processes:
        yield processes


async def history(server: RunningServer, room: str) -> list[dict[str, Any]]:
    """Every message the room's history holds, oldest first (paged backwards)."""
    messages: list[dict[str, Any]] = []
    before = ""
    while True:
        path = f"/api/chat-api/rooms/{room}/messages?limit=100{before}"
        status, _, body = await raw_request(
            server.port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
        )
        assert status == 200, body
        page = json.loads(body)
        messages = page["messages"] + messages
        if not page["has_more"]:
            return messages
        before = f"&before={page['messages'][0]['seq']}"


@pytest.mark.filterwarnings(
    # coredis 6.9's sharded pub/sub enters one pool.acquire() per shard in an
    # AsyncExitStack it never closes; when a failover ends the subscriber,
    # those generators are finalized by the garbage collector (and their
    # release raises KeyError inside coredis). Nothing of ours leaks.
    "ignore:Exception ignored in. <async_generator object ClusterConnectionPool.acquire"
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_master_failover_loses_no_order_and_recovery_fills_the_gaps(
    start_server: StartServer, fresh_cluster: RedisClusterProcesses
) -> None:
    (room,) = rooms_on_every_shard(fresh_cluster, 1)
    a, b = await start_cluster_instances(start_server, fresh_cluster, 2)
    sent: list[str] = []

    async def say(sender: Client, count: int) -> None:
        for _ in range(count):
            sent.append(f"m{len(sent)}")
            await sender.send({"body": sent[-1]})
            # Handled (published, or local during the outage): not
            # necessarily echoed, as a batch lost with its shard is not.
            await sender.drain_until_sync()

    async def receive_until(client: Client, body: str) -> list[dict[str, Any]]:
        frames = [await client.receive_type("chat")]
        while frames[-1]["body"] != body:
            frames.append(await client.receive_type("chat"))
        return frames

    with trio.fail_after(WAIT * 6):
        async with connect(a.url(room)) as sender, connect(a.url(room)) as stayed:
            async with connect(b.url(room)) as left:
                await say(sender, 20)
                before_gap = await receive_until(left, sent[-1])
                since, epoch = before_gap[-1]["seq"], left.subscribed["epoch"]
            # `left` is gone while the room's master dies and its replica takes over.
            dead = fresh_cluster.master_of(f"{{{room}}}")
            # What the clients saw has reached the replica (the guarantee
            # asserted); only then does the master die.
            await trio.to_thread.run_sync(dead.wait_replicated)
            dead.kill()
            await say(sender, 10)  # on a alone, without seq, until a notices the failover
            await trio.to_thread.run_sync(fresh_cluster.wait_failed_over, dead)
            for server in (a, b):
                await wait_connected(server)
            await say(sender, 20)
            stayed_frames = await receive_until(stayed, sent[-1])
            async with connect(b.url("lobby")) as back:
                since_frame = {"epoch": epoch, "seq": since}
                await back.send({"type": "subscribe", "room": room, "since": since_frame})
                resubscribed = await back.receive_type("subscribed")
                assert resubscribed["recovered"] is True, resubscribed
                recovered = await receive_until(back, sent[-1])
        kept = await history(b, room)

    kept_seqs = [message["seq"] for message in kept]
    assert kept_seqs == sorted(set(kept_seqs)), "history reordered or doubled a seq"
    assert {m["body"] for m in kept if m["seq"] > since} == {m["body"] for m in recovered}
    for frames in (stayed_frames, before_gap + recovered):
        seqs = [frame["seq"] for frame in frames if "seq" in frame]
        assert seqs == sorted(set(seqs)), "a seq came twice or out of order"
        bodies = [frame["body"] for frame in frames]
        assert len(bodies) == len(set(bodies)), "a message came twice"
        # What was said after the failover reached everyone, numbered.
        assert set(sent[30:]) <= {frame["body"] for frame in frames if "seq" in frame}
