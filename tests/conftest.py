"""Fixtures: a chat_service instance in the test's nursery, on port 0."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio

from chat_service.app import ChatRuntime
from chat_service.config import Config
from chat_service.realtime import Broadcaster, HandlerConfig
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
