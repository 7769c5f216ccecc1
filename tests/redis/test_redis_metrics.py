"""The Redis side of GET /metrics: the connection gauge, reconnects after a
real redis-server restart, and the publish batches."""

from __future__ import annotations

import trio
from pytest_redis.executor import RedisExecutor

from ..conftest import StartServer
from ..helpers import connect, scrape, value
from ..redis_helpers import start_instances, tcp_url, wait_connected


async def test_redis_connection_and_reconnect_are_counted(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    (server,) = await start_instances(start_server, tcp_url(redis_server), 1)
    async with connect(server.url("r")) as alice:
        await alice.send({"body": "one"})
        assert (await alice.receive_type("chat"))["seq"] == 1
        samples = await scrape(server.port)
        assert value(samples, "chat_redis_connected") == 1
        assert value(samples, "chat_redis_reconnects_total") == 0
        assert value(samples, "chat_redis_publish_batch_size_count") >= 1
        assert value(samples, "chat_redis_publish_seconds_count") >= 1
        assert value(samples, "chat_messages_published_total") == 1

        await trio.to_thread.run_sync(redis_server.kill)  # SIGKILL
        await wait_connected(server, False)
        assert value(await scrape(server.port), "chat_redis_connected") == 0
        await trio.to_thread.run_sync(redis_server.start)  # the same port
        await wait_connected(server)
        samples = await scrape(server.port)
        assert value(samples, "chat_redis_connected") == 1
        assert value(samples, "chat_redis_reconnects_total") == 1
