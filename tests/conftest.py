"""Fixtures: a chat_service instance in the test's nursery, on port 0, and
redis-server processes of the test's own."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from functools import partial
from typing import Any

import port_for
import pytest
import trio
from pytest_redis.executor import RedisExecutor

from chat_service.config import Config
from chat_service.realtime import Broadcaster, HandlerConfig
from chat_service.runtime import ChatRuntime
from chat_service.server import serve

from .helpers import RunningServer

StartServer = Callable[..., Awaitable[RunningServer]]


async def start_server_in(
    nursery: trio.Nursery,
    *,
    make_handler_config: Callable[[Broadcaster], HandlerConfig] | None = None,
    **settings: Any,
) -> RunningServer:
    """Start an instance with some settings changed in `nursery`."""
    # Most tests send faster than a person types; the rate limit's own
    # tests switch it on.
    settings.setdefault("rate_limit_per_second", 0)
    config = dataclasses.replace(Config(), port=0, **settings)
    runtime = ChatRuntime(config, make_handler_config=make_handler_config)
    binds = await nursery.start(partial(serve, config, runtime=runtime))
    return RunningServer(runtime, int(binds[0].rsplit(":", 1)[1]))


@pytest.fixture
def start_server(nursery: trio.Nursery) -> StartServer:
    """Start an instance with some settings changed; it stops with the test."""
    return partial(start_server_in, nursery)


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    """An instance with the default settings."""
    return await start_server()


StartRedis = Callable[..., RedisExecutor]


@pytest.fixture
def start_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartRedis]:
    """Start a redis-server on a free port (never the machine's 6379), with
    a unix socket too; each is killed when the test ends."""
    executable = shutil.which("redis-server")
    assert executable, "redis-server is missing: `make test` installs it"
    with ExitStack() as stack:

        def start(*, password: str | None = None, port: int | None = None) -> RedisExecutor:
            executor = RedisExecutor(
                executable,
                databases=16,
                redis_timeout=30,
                loglevel="warning",
                host="127.0.0.1",
                port=port or port_for.select_random(),
                password=password,
                startup_timeout=10,
                save="",
                # A short directory: the unix socket lives there (107 bytes at most).
                datadir=tmp_path_factory.mktemp("redis"),
            )
            return stack.enter_context(executor)

        yield start


@pytest.fixture
def redis_server(start_redis: StartRedis) -> RedisExecutor:
    """A redis-server of this test's own, without a password."""
    return start_redis()
