"""Through a real nginx with the shipped site configuration: clients spread
over the instances and chat across them, and the service sees each
client's own address."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import pytest
from pytest_redis.executor import RedisExecutor
from trio_websocket import ConnectionRejected

from chat_service.config import Config

from ..conftest import StartServer
from ..helpers import connect
from ..redis_helpers import chat_bodies, start_instances, tcp_url
from .conftest import StartNginx


def _url(port: int, room: str, **query: str) -> str:
    suffix = "".join(f"&{key}={value}" for key, value in query.items()).replace("&", "?", 1)
    return f"ws://127.0.0.1:{port}/api/chat-api/ws/{room}{suffix}"


def _too_many(rejected: ConnectionRejected) -> bool:
    return rejected.status_code == 429


async def test_clients_land_on_every_instance_and_chat_across_them(
    start_server: StartServer, start_nginx: StartNginx, redis_server: RedisExecutor
) -> None:
    servers = await start_instances(start_server, tcp_url(redis_server), 3)
    port = await start_nginx([server.port for server in servers])
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(connect(_url(port, "hall", user_id=f"u{n}")))
            for n in range(6)
        ]
        # least_conn: long-lived sockets are spread, two per instance.
        assert [server.runtime.hub.connection_count() for server in servers] == [2, 2, 2]
        for n, client in enumerate(clients):
            await client.send({"body": f"hello from u{n}"})
            # Every client, on every instance, has it before the next one is sent.
            for receiver in clients:
                assert (await receiver.receive_type("chat"))["body"] == f"hello from u{n}"
        for client in clients:
            assert chat_bodies(await client.drain_until_sync()) == []


async def test_the_instance_sees_the_clients_address_not_nginx(
    start_server: StartServer,
    start_nginx: StartNginx,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chat_service")
    trusted = Config.load({"FORWARDED_ALLOW_IPS": "127.0.0.1"}).forwarded_allow_ips
    server = await start_server(max_connections_per_ip=1, forwarded_allow_ips=trusted)
    port = await start_nginx([server.port])
    # Two "machines" on the loopback network: 127.0.0.2 and 127.0.0.3.
    async with connect(_url(port, "hall"), local_address="127.0.0.2"):
        with pytest.RaisesGroup(pytest.RaisesExc(ConnectionRejected, check=_too_many)):
            async with connect(_url(port, "hall"), local_address="127.0.0.2"):
                pass
        async with connect(_url(port, "hall"), local_address="127.0.0.3") as other:
            assert other.welcome["type"] == "welcome"
    connected = [r for r in caplog.records if r.getMessage() == "client connected"]
    addresses = [record.fields["address"] for record in connected]
    assert addresses == ["127.0.0.2", "127.0.0.3"]
