"""Publish throughput to Redis: the batching publisher of RedisBroadcaster
against one PUBLISH per message, both with coredis on trio.

Starts its own redis-server on a free loopback port, publishes the same
~200-byte chat frames to one channel nobody subscribes to (so only the
publishing is measured), and prints messages per second:

    .venv/bin/python bench/redis_publish.py [MESSAGES] [SENDERS]

`SENDERS` concurrent tasks share the messages, as connections of one
instance would (default 100); each mode also runs with one sender.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import coredis
import port_for
import trio
from pytest_redis.executor import RedisExecutor

from chat_service.realtime.message import encode
from chat_service.realtime.redis_broadcaster import RedisBroadcaster

ROOM = "bench"
FRAME = encode(
    {
        "type": "chat",
        "id": "0" * 32,
        "room": ROOM,
        "client_id": "0123456789abcdef",
        "user_id": "benchmark-user",
        "body": "x" * 100,
        "ts": 1_700_000_000_000,
    }
)

Send = Callable[[], Awaitable[object]]


async def _timed(senders: int, messages: int, send: Send) -> float:
    """Seconds for `senders` tasks to send `messages` in all."""

    async def sender(count: int) -> None:
        for _ in range(count):
            await send()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(senders):
            nursery.start_soon(sender, messages // senders + (index < messages % senders))
    return time.perf_counter() - start


async def batched(url: str, senders: int, messages: int) -> float:
    fanout = RedisBroadcaster(
        url,
        channel_prefix="chat:room:",
        reconnect_min=0.1,
        reconnect_max=1,
        history_size=1000,
        history_ttl=86400,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(fanout.run, lambda room, frame, skip: None)
        await fanout.wait_connected()
        start = time.perf_counter()
        await _timed(senders, messages, lambda: fanout.publish(ROOM, FRAME))
        await fanout.flush()  # every frame has been through Redis
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


async def one_publish_each(url: str, senders: int, messages: int) -> float:
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        await client.ping()
        return await _timed(
            senders, messages, lambda: client.publish(f"chat:room:{{{ROOM}}}", FRAME)
        )


async def main(url: str, messages: int, senders: int) -> None:
    for name, run in (("batching publisher", batched), ("one PUBLISH each", one_publish_each)):
        for tasks in (1, senders):
            await run(url, tasks, messages // 10)  # warm up
            elapsed = await run(url, tasks, messages)
            print(f"{name:<20} senders={tasks:<4} {messages / elapsed:>10,.0f} messages/s")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    executable = shutil.which("redis-server")
    assert executable, "redis-server is missing"
    with tempfile.TemporaryDirectory() as datadir:
        server = RedisExecutor(
            executable,
            databases=1,
            redis_timeout=30,
            loglevel="warning",
            host="127.0.0.1",
            port=port_for.select_random(),
            save="",
            datadir=Path(datadir),
        )
        with server:
            print(f"redis-server on 127.0.0.1:{server.port}, {count:,} frames of {len(FRAME)} B")
            trio.run(main, f"redis://127.0.0.1:{server.port}", count, concurrency)
