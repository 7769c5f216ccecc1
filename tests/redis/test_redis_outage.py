"""Redis going away, coming back, or never there: the instances keep serving."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import port_for
import pytest
import trio
import trio.testing
from pytest_redis.executor import RedisExecutor

from chat_service.realtime.message import encode
from chat_service.realtime.redis_broadcaster import RedisBroadcaster

from ..conftest import StartRedis, StartServer
from ..helpers import WAIT, connect
from ..redis_helpers import (
    FAST_RECONNECT,
    broadcaster,
    chat_bodies,
    readyz,
    redis_client,
    start_instances,
    tcp_url,
    wait_connected,
)

OUTAGE_LOG = "redis unavailable"
BROADCASTER_SETTINGS: dict[str, Any] = {
    "channel_prefix": "chat:room:",
    "reconnect_min": 0.01,
    "reconnect_max": 0.1,
    "history_size": 100,
    "history_ttl": 60,
}


async def test_sigkilled_redis_degrades_to_local_then_recovers_without_duplicates(
    start_server: StartServer, redis_server: RedisExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chat_service")
    a, b = await start_instances(start_server, tcp_url(redis_server), 2, presence_events=False)
    async with (
        connect(a.url("r")) as alice,
        connect(a.url("r")) as anna,
        connect(b.url("r")) as bob,
    ):
        await alice.send({"body": "before"})
        for client in (alice, anna, bob):
            assert (await client.receive_type("chat"))["body"] == "before"

        await trio.to_thread.run_sync(redis_server.kill)  # SIGKILL
        await wait_connected(a, False)
        await wait_connected(b, False)
        assert await readyz(a) == (503, {"status": "not_ready", "reason": "redis_unavailable"})

        # Meanwhile each instance still serves its own clients.
        await alice.send({"body": "during"})
        for client in (alice, anna):
            during = await client.receive_type("chat")
            assert during["body"] == "during"
            assert "seq" not in during, "no seq can be given while Redis is down"
        # A room that got its first member during the outage.
        async with connect(b.url("fresh")):
            await trio.to_thread.run_sync(redis_server.start)  # same port
            await wait_connected(a)
            await wait_connected(b)
            assert (await readyz(a))[0] == 200
            assert (await readyz(b))[0] == 200
            # Each instance resubscribed exactly the rooms it has members in.
            async with redis_client(redis_server) as redis:
                channels = set(await redis.pubsub_channels("chat:room:*"))
                assert await redis.pubsub_numsub("chat:room:{r}") == {"chat:room:{r}": 2}
            controls = {broadcaster(a).control_channel, broadcaster(b).control_channel}
            assert channels == {"chat:room:{r}", "chat:room:{fresh}"} | controls

        await alice.send({"body": "after-a"})
        await bob.send({"body": "after-b"})
        clients = {"alice": alice, "anna": anna, "bob": bob}
        for client in clients.values():
            # Redis came back empty: the room's count began again, in a new epoch.
            renewed = await client.receive_type("subscribed")
            assert renewed["epoch"] != client.subscribed["epoch"]
            assert (renewed["seq"], renewed["recovered"]) == (0, False)
        received = {
            name: [await client.receive_type("chat"), await client.receive_type("chat")]
            for name, client in clients.items()
        }
        await broadcaster(a).flush()
        await broadcaster(b).flush()
        bodies = {
            name: chat_bodies(received[name] + await client.drain_until_sync())
            for name, client in clients.items()
        }

    assert sorted(bodies["alice"]) == ["after-a", "after-b"]
    assert bodies["anna"] == bodies["alice"]
    assert bodies["bob"] == bodies["alice"], "one order, no duplicates, after the outage"
    assert [frame["seq"] for frame in received["bob"]] == [1, 2]
    # Each instance logged the outage once, however many reconnects failed.
    outages = [r for r in caplog.records if r.getMessage().startswith(OUTAGE_LOG)]
    assert len(outages) == 2, [r.getMessage() for r in outages]


async def test_unreachable_redis_at_start_serves_locally_and_keeps_trying(
    start_server: StartServer, start_redis: StartRedis
) -> None:
    port = port_for.select_random()
    server = await start_server(redis_url=f"redis://127.0.0.1:{port}", **FAST_RECONNECT)
    assert await readyz(server) == (503, {"status": "not_ready", "reason": "redis_unavailable"})
    with trio.fail_after(WAIT):
        await broadcaster(server).flush()  # nothing in flight while Redis is down
    async with connect(server.url("r")) as alice, connect(server.url("r")) as bob:
        # Subscribed without a position: the history cannot be read.
        assert (alice.subscribed["epoch"], alice.subscribed["seq"]) == (None, None)
        await alice.send({"body": "local"})
        for client in (alice, bob):
            assert (await client.receive_type("chat"))["body"] == "local"

        redis = await trio.to_thread.run_sync(lambda: start_redis(port=port))
        await wait_connected(server)
        assert (await readyz(server))[0] == 200
        # The room with local members was subscribed on the way up.
        (other,) = await start_instances(start_server, tcp_url(redis), 1)
        async with connect(other.url("r")) as carol:
            await carol.send({"body": "across"})
            for client in (alice, bob):
                # Told the room's position before its first message with a seq.
                renewed = await client.receive_type("subscribed")
                assert (renewed["epoch"], renewed["seq"]) == (carol.subscribed["epoch"], 0)
                across = await client.receive_type("chat")
                assert (across["body"], across["seq"]) == ("across", 1)


async def test_full_publish_queue_makes_publishers_wait(
    redis_server: RedisExecutor, nursery: trio.Nursery
) -> None:
    # A tiny queue, so that a few frames fill it.
    fanout = RedisBroadcaster(tcp_url(redis_server), queue_size=2, **BROADCASTER_SETTINGS)
    delivered: list[str] = []
    await nursery.start(fanout.run, lambda room, frame, skip: delivered.append(frame))
    with trio.fail_after(WAIT):
        await fanout.wait_connected()
        await fanout.subscribe("r").wait()
    frame = encode({"type": "chat", "body": "x"})
    os.kill(redis_server.process.pid, signal.SIGSTOP)  # Redis stops answering
    try:
        await fanout.publish("r", frame)
        await trio.testing.wait_all_tasks_blocked()  # its batch is in flight, unanswered
        for _ in range(2):  # fill the queue
            await fanout.publish("r", frame)
        done = trio.Event()

        async def publish_one_more() -> None:
            await fanout.publish("r", frame)
            done.set()

        nursery.start_soon(publish_one_more)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set(), "publish() did not wait for room in the queue"
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    with trio.fail_after(WAIT):
        await done.wait()
        await fanout.flush()
    assert delivered == [frame] * 4, "each frame came back once"
