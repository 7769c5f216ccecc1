"""Several instances on one real redis-server behave as one chat."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import port_for
import pytest
import trio
import trio.testing
from mirakuru import TCPExecutor
from pytest_redis.executor import RedisExecutor

from chat_service.realtime import Broadcaster, Connection, HandlerConfig
from chat_service.realtime.message import encode
from chat_service.realtime.redis_broadcaster import RedisBroadcaster

from ..conftest import StartRedis, StartServer, start_server_in
from ..helpers import WAIT, Client, connect
from ..redis_helpers import (
    broadcaster,
    chat_bodies,
    clients_named,
    fence,
    redis_client,
    start_instances,
    subscribers,
    tcp_url,
)


async def test_message_crosses_instances_once(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2)
    async with connect(a.url("general")) as alice, connect(b.url("general")) as bob:
        await alice.send({"body": "hi from a"})
        await bob.send({"body": "hi from b"})
        for client in (alice, bob):
            first = await client.receive_type("chat")
            second = await client.receive_type("chat")
            assert {first["body"], second["body"]} == {"hi from a", "hi from b"}
            assert await client.drain_until_sync() == []


async def test_rooms_stay_isolated_across_instances(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(start_server, tcp_url(redis_server), 2, presence_events=False)
    async with (
        connect(a.url("x")) as sender,
        connect(b.url("x")) as same_room,
        connect(b.url("y")) as other_room,
    ):
        await sender.send({"body": "for x"})
        assert (await same_room.receive_type("chat"))["body"] == "for x"
        # b handed that frame to its hub already: had it gone to y, it would be here.
        assert await other_room.drain_until_sync() == []


async def test_every_client_everywhere_sees_one_order(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    servers = await start_instances(start_server, tcp_url(redis_server), 3, presence_events=False)
    per_sender = 15
    async with (
        connect(servers[0].url("r")) as c0,
        connect(servers[0].url("r")) as c1,
        connect(servers[1].url("r")) as c2,
        connect(servers[1].url("r")) as c3,
        connect(servers[2].url("r")) as c4,
        connect(servers[2].url("r")) as c5,
    ):
        clients = [c0, c1, c2, c3, c4, c5]
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

    orders = [chat_bodies(seen[index]) for index in range(len(clients))]
    assert all(order == orders[0] for order in orders), "clients disagree on the order"
    assert len(set(orders[0])) == per_sender * len(clients), "a message was lost or doubled"
    for index in range(len(clients)):
        mine = [body for body in orders[0] if body.startswith(f"{index}:")]
        assert mine == [f"{index}:{n}" for n in range(per_sender)], "a sender's order changed"


async def test_subscriptions_follow_local_membership(
    start_server: StartServer, redis_server: RedisExecutor, nursery: trio.Nursery
) -> None:
    departures_in, departures = trio.open_memory_channel[str](10)

    def hooks(broadcaster: Broadcaster) -> HandlerConfig:
        async def departed(conn: Connection) -> None:
            departures_in.send_nowait(conn.id)  # after the hub let it go

        return HandlerConfig(broadcaster, on_disconnect=departed)

    a, b = await start_instances(start_server, tcp_url(redis_server), 2, make_handler_config=hooks)
    async with redis_client(redis_server) as client:
        assert set(await client.pubsub_channels("chat:room:*")) == {
            broadcaster(a).control_channel,
            broadcaster(b).control_channel,
        }
    assert await subscribers(redis_server, "x") == 0

    async with connect(b.url("x")):
        async with connect(a.url("x")) as outer:
            assert await subscribers(redis_server, "x") == 2
            async with connect(a.url("x")) as inner:
                assert await subscribers(redis_server, "x") == 2
            with trio.fail_after(WAIT):
                assert await departures.receive() == inner.client_id
            await fence(a, nursery)
            assert await subscribers(redis_server, "x") == 2, "a still has a member in x"
        with trio.fail_after(WAIT):
            assert await departures.receive() == outer.client_id
        await fence(a, nursery)
        assert await subscribers(redis_server, "x") == 1, "a kept x without members"


async def test_flush_returns_once_published_frames_came_back(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    (server,) = await start_instances(start_server, tcp_url(redis_server), 1)
    async with connect(server.url("r")) as client:
        for n in range(50):
            await broadcaster(server).publish("r", encode({"type": "chat", "body": str(n)}))
        await broadcaster(server).flush()
        # flush() handed every frame to the hub: the pong comes after all of them.
        frames = await client.drain_until_sync()
    assert chat_bodies(frames) == [str(n) for n in range(50)]


async def test_stopping_closes_every_redis_connection(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    url = tcp_url(redis_server)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as own:
            # This instance's nursery is ours, so we can stop it mid-test.
            (server,) = await start_instances(partial(start_server_in, own), url, 1)
            name = broadcaster(server).client_name
            async with connect(server.url("r")) as client:
                await client.send({"body": "hello"})
                await client.receive_type("chat")
                assert len(await clients_named(redis_server, name)) >= 2  # publisher, subscriber
            scope.cancel()
    assert await clients_named(redis_server, name) == []


async def test_unix_socket_and_password_with_database(
    start_server: StartServer, start_redis: StartRedis
) -> None:
    redis = start_redis(password="s3cret-pass")
    over_tcp = tcp_url(redis, password="s3cret-pass", db=3)
    over_unix = f"unix://:s3cret-pass@{redis.unixsocket}?db=3"
    (a,) = await start_instances(start_server, over_tcp, 1)
    (b,) = await start_instances(start_server, over_unix, 1)
    async with connect(a.url("r")) as alice, connect(b.url("r")) as bob:
        await bob.send({"body": "over the socket"})
        assert (await alice.receive_type("chat"))["body"] == "over the socket"
        for server in (a, b):
            entries = await clients_named(redis, broadcaster(server).client_name)
            assert entries
            assert {entry["db"] for entry in entries} == {3}


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[TCPExecutor, Path]]:
    """A redis-server speaking only TLS, with a self-signed certificate for
    127.0.0.1; the certificate is its own CA."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    openssl += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
    openssl += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        openssl,
        check=True,
        capture_output=True,
        timeout=30,
    )
    port = port_for.select_random()
    command = [shutil.which("redis-server") or "redis-server", "--port", "0", "--save", ""]
    command += ["--bind", "127.0.0.1", "--tls-port", str(port), "--tls-auth-clients", "no"]
    command += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    command += ["--tls-ca-cert-file", str(cert), "--dir", str(tmp_path)]
    with TCPExecutor(command, host="127.0.0.1", port=port, timeout=10) as executor:
        yield executor, cert


async def test_tls_url_with_certificate_check(
    start_server: StartServer, tls_redis: tuple[TCPExecutor, Path]
) -> None:
    redis, cert = tls_redis
    url = f"rediss://127.0.0.1:{redis.port}?ssl_ca_certs={cert}&ssl_cert_reqs=required"
    a, b = await start_instances(start_server, url, 2)
    async with connect(a.url("r")) as alice, connect(b.url("r")) as bob:
        await alice.send({"body": "over TLS"})
        assert (await bob.receive_type("chat"))["body"] == "over TLS"


async def test_frames_queued_together_travel_as_one_redis_message_per_room(
    redis_server: RedisExecutor, nursery: trio.Nursery
) -> None:
    fanout = RedisBroadcaster(
        tcp_url(redis_server),
        channel_prefix="chat:room:",
        reconnect_min=0.01,
        reconnect_max=0.1,
        history_size=100,
        history_ttl=60,
    )
    delivered: list[tuple[str, str, str | None]] = []
    await nursery.start(fanout.run, lambda room, frame, skip: delivered.append((room, frame, skip)))
    first, r1, r2, r3, s1 = (
        encode({"type": "chat", "body": b}) for b in "first r1 r2 r3 s1".split()
    )
    async with redis_client(redis_server) as watcher, watcher.pubsub() as seen:
        await seen.subscribe("chat:room:{r}")
        with trio.fail_after(WAIT):
            await fanout.wait_connected()
            await fanout.subscribe("r").wait()
            await fanout.subscribe("s").wait()
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # Redis stops answering
        try:
            await fanout.publish("r", first)
            await trio.testing.wait_all_tasks_blocked()  # its batch is in flight, unanswered
            for room, frame, skip in (
                ("r", r1, None),
                ("s", s1, None),
                ("r", r2, "c1"),
                ("r", r3, None),
            ):
                await fanout.publish(room, frame, skip=skip)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        with trio.fail_after(WAIT):
            await fanout.flush()
            messages = [await _next_message(seen) for _ in range(2)]
    # Each batch is one run of the publish script: the room's epoch, then its frames.
    epochs, bodies = zip(*(message.split("\n", 1) for message in messages), strict=True)
    assert epochs[0] == epochs[1]
    assert epochs[0].startswith("=")
    assert list(bodies) == [first, f"{r1}\nc1 {r2}\n{r3}"]  # the queued three as one message
    assert [d for d in delivered if d[0] == "r"] == [
        ("r", first, None),
        ("r", r1, None),
        ("r", r2, "c1"),
        ("r", r3, None),
    ]
    assert [d for d in delivered if d[0] == "s"] == [("s", s1, None)]


async def _next_message(pubsub: Any) -> str:
    while True:
        message = await pubsub.get_message()
        if message is not None and message["type"] == "message":
            return str(message["data"])
