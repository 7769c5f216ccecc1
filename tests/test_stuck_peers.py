"""A peer that never reads cannot hold the instance: Hypercorn's writes are
shielded from cancellation, so a failure of the hub or broadcaster, and the
drain's deadline, end such a connection by closing its socket; and the
kernel bounds what a vanished peer holds (TCP_USER_TIMEOUT, keepalive)."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from chat_service import runtime as runtime_module
from chat_service.config import Config
from chat_service.realtime import LocalBroadcaster
from chat_service.realtime.broadcaster import Deliver, EpochSeen
from chat_service.realtime.history import MemoryHistory
from chat_service.runtime import ChatRuntime
from chat_service.server import serve

from .conftest import StartServer
from .helpers import WAIT, connect
from .raw_websocket import raw_websocket

BODY_CHARS = 30_000
# Frames queued for the stuck client once its socket is full: its send has
# been blocked for that many of the room's frames.
STUCK_QUEUE = 8
GRACE = 2.0


class _BroadcasterThatFails(LocalBroadcaster):
    """In-process fan-out whose task fails when `fail` is set."""

    def __init__(self) -> None:
        self.history = MemoryHistory(size=10, ttl=10)
        super().__init__(self.history)
        self.fail = trio.Event()

    async def run(
        self,
        deliver: Deliver,
        epoch_seen: EpochSeen | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._deliver = deliver
        task_status.started()
        await self.fail.wait()
        raise RuntimeError("fan-out died")


def _config() -> Config:
    return dataclasses.replace(
        Config(),
        port=0,
        send_queue_size=10_000,  # never a slow consumer: its send stays blocked
        max_body_chars=BODY_CHARS,
        max_message_bytes=4 * BODY_CHARS,
        presence_events=False,
        rate_limit_per_second=0,
        shutdown_grace_seconds=GRACE,
    )


@asynccontextmanager
async def _stuck_client(port: int, runtime: ChatRuntime) -> AsyncIterator[None]:
    """A client in room "stuck" that stopped reading, with the server's
    write to it blocked; its socket is closed WAIT after it got stuck (so a
    server that cannot end it fails the test instead of hanging it)."""
    path = "/api/chat-api/ws/stuck"
    async with raw_websocket(port, path, receive_buffer=4096) as stuck, trio.open_nursery() as n:
        await stuck.receive_frame()  # its welcome; from now on it does not read
        (conn,) = runtime.hub.connections()
        async with connect(f"ws://127.0.0.1:{port}{path}") as sender:
            with trio.fail_after(WAIT):
                while conn.queued < STUCK_QUEUE:
                    await sender.send({"body": "x" * BODY_CHARS})
                    await sender.receive_type("chat")
        n.start_soon(_close_later, stuck.stream)
        try:
            yield
        finally:
            n.cancel_scope.cancel()


async def _close_later(stream: trio.SocketStream) -> None:
    await trio.sleep(WAIT)
    await stream.aclose()


async def test_a_failing_broadcaster_ends_serving_while_a_client_does_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broadcaster = _BroadcasterThatFails()
    monkeypatch.setattr(
        runtime_module,
        "make_broadcaster",
        lambda config, metrics=None: (broadcaster, broadcaster.history),
    )
    config = _config()
    runtime = ChatRuntime(config)
    failed_at = ended_at = 0.0
    with pytest.raises(ExceptionGroup) as raised:  # noqa: PT012 -- serve raises from its nursery
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, config, runtime=runtime))
            async with _stuck_client(int(binds[0].rsplit(":", 1)[1]), runtime):
                failed_at = trio.current_time()
                broadcaster.fail.set()
                try:
                    await trio.sleep_forever()
                finally:
                    ended_at = trio.current_time()
    assert raised.group_contains(RuntimeError, match="fan-out died", depth=None)
    assert ended_at - failed_at < WAIT / 2


async def test_the_drain_ends_within_the_grace_period_while_a_client_does_not_read() -> None:
    config = _config()
    runtime = ChatRuntime(config)
    stop = trio.Event()
    ended = trio.Event()

    async def serving(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(config, runtime=runtime, shutdown_trigger=stop.wait, task_status=task_status)
        ended.set()

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serving)
        async with _stuck_client(int(binds[0].rsplit(":", 1)[1]), runtime):
            stopped_at = trio.current_time()
            stop.set()
            with trio.fail_after(WAIT):
                await ended.wait()
            assert trio.current_time() - stopped_at <= GRACE + 0.5


def _accepted_socket_of(client: trio.socket.SocketType) -> socket.socket:
    """The server's end of `client`'s connection: this process's socket
    whose peer is `client` (the server runs in this process)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            candidate = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if candidate.getpeername() == client.getsockname():
                return candidate
        except OSError:
            pass
        candidate.close()
    raise AssertionError("no accepted socket for the client")


async def test_accepted_sockets_get_the_kernels_bounds(start_server: StartServer) -> None:
    server = await start_server(tcp_user_timeout=7, tcp_keepalive_idle=4)
    async with raw_websocket(server.port, "/api/chat-api/ws/bounds") as ws:
        client = ws.stream.socket
        with _accepted_socket_of(client) as accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000
            assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 4
