"""Helpers for the tests that run instances against a real redis-server."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import trio
from pytest_redis.executor import RedisExecutor

from chat_service.realtime.redis_broadcaster import RedisBroadcaster
from chat_service.realtime.redis_history import RoomKeys

from .conftest import StartServer
from .helpers import WAIT, RunningServer, connect, raw_request

# Reconnect quickly: the tests restart Redis and wait for the instances to notice.
FAST_RECONNECT = {"redis_reconnect_min": 0.01, "redis_reconnect_max": 0.1}


def tcp_url(redis: RedisExecutor, *, password: str | None = None, db: int | None = None) -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}{redis.host}:{redis.port}" + (f"/{db}" if db is not None else "")


def broadcaster(server: RunningServer) -> RedisBroadcaster:
    fanout = server.runtime.broadcaster
    assert isinstance(fanout, RedisBroadcaster)
    return fanout


async def start_instances(
    start_server: StartServer, url: str, count: int, **settings: Any
) -> list[RunningServer]:
    """`count` instances on one Redis, each connected to it."""
    servers = [
        await start_server(redis_url=url, **FAST_RECONNECT, **settings) for _ in range(count)
    ]
    for server in servers:
        await wait_connected(server)
    return servers


async def wait_connected(server: RunningServer, connected: bool = True) -> None:
    with trio.fail_after(WAIT):
        await broadcaster(server).wait_connected(connected)


async def readyz(server: RunningServer) -> tuple[int, dict[str, Any]]:
    status, _, body = await raw_request(
        server.port, b"GET /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    return status, json.loads(body)


@asynccontextmanager
async def redis_client(redis: RedisExecutor, **kwargs: Any) -> AsyncIterator[coredis.Redis[str]]:
    """The test's own connection to `redis`, to look at its state."""
    client = coredis.Redis(
        redis.host, redis.port, password=redis.password, decode_responses=True, **kwargs
    )
    with trio.fail_after(WAIT):
        async with client:
            yield client


async def clients_named(redis: RedisExecutor, name: str) -> list[dict[str, Any]]:
    """CLIENT LIST entries of connections named `name`, seen from a fresh
    connection (its handshake round trips come after any close we did)."""
    async with redis_client(redis) as client:
        return [entry for entry in await client.client_list() if entry.get("name") == name]


def chat_bodies(frames: list[dict[str, Any]]) -> list[str]:
    return [frame["body"] for frame in frames if frame["type"] == "chat"]


async def subscribers(redis: RedisExecutor, room: str) -> int:
    async with redis_client(redis) as client:
        channel = RoomKeys.of("chat:room:", room).channel
        counts = await client.pubsub_numsub(channel)
    return int(counts[channel])


async def fence(server: RunningServer, nursery: trio.Nursery) -> None:
    """Return once `server` has sent Redis every SUBSCRIBE/UNSUBSCRIBE it
    owed so far: it (un)subscribes in order on one connection, and a client
    joining a new room gets its welcome only after that room's SUBSCRIBE."""
    entered = trio.Event()

    async def join_new_room() -> None:
        async with connect(server.url(f"fence-{secrets.token_hex(4)}")):
            entered.set()
            await trio.sleep_forever()

    nursery.start_soon(join_new_room)
    with trio.fail_after(WAIT):
        await entered.wait()
