"""Failures stay where they happen: a raising hook or a vanished client ends
only its own connection, and a dying long-lived task ends the service
cleanly with one log line. Also: nothing outlives `serve`."""

from __future__ import annotations

import dataclasses
import logging
import socket
import struct
import threading
from functools import partial

import pytest
import trio

from chat_service import __main__ as entry_point
from chat_service import runtime as runtime_module
from chat_service.config import Config
from chat_service.realtime import Broadcaster, Connection, HandlerConfig, LocalBroadcaster
from chat_service.realtime.broadcaster import Deliver, EpochSeen
from chat_service.realtime.history import MemoryHistory
from chat_service.runtime import ChatRuntime
from chat_service.server import serve

from .conftest import StartServer
from .helpers import WAIT, connect, wait_for_join, wait_for_leave
from .raw_websocket import raw_websocket, read_until, upgrade_request


async def test_a_raising_on_connect_closes_only_its_connection_with_1011(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def refuse_mallory(conn: Connection) -> None:
        if conn.user_id == "mallory":
            raise RuntimeError("on_connect failure")

    def hooks(broadcaster: Broadcaster) -> HandlerConfig:
        return HandlerConfig(broadcaster, on_connect=refuse_mallory)

    server = await start_server(make_handler_config=hooks)
    async with connect(server.url("h", user_id="alice")) as alice:
        async with raw_websocket(server.port, "/api/chat-api/ws/h?user_id=mallory") as raw:
            assert await raw.close_code() == 1011
        await alice.send({"body": "still chatting"})
        assert (await alice.receive_type("chat"))["body"] == "still chatting"
    failures = [r for r in caplog.records if r.getMessage().startswith("connection failed")]
    assert len(failures) == 1
    assert failures[0].fields["user_id"] == "mallory"


async def test_a_raising_on_disconnect_is_logged_and_harms_nobody(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(conn: Connection) -> None:
        raise RuntimeError("on_disconnect failure")

    def hooks(broadcaster: Broadcaster) -> HandlerConfig:
        return HandlerConfig(broadcaster, on_disconnect=explode)

    server = await start_server(make_handler_config=hooks, presence_interval=0.05)
    async with connect(server.url("d", user_id="stays")) as stays:
        async with connect(server.url("d", user_id="leaves")) as leaves:
            gone = leaves.client_id
            await wait_for_join(stays, "leaves")
        await wait_for_leave(stays, "leaves")
        await stays.send({"body": "after"})
        assert (await stays.receive_type("chat"))["body"] == "after"
        assert server.runtime.hub.connection_count() == 1
    assert any(r.fields["client_id"] == gone for r in caplog.records if r.exc_info)


async def test_a_vanished_client_is_removed_and_its_leave_sent(start_server: StartServer) -> None:
    server = await start_server(presence_interval=0.05)
    async with connect(server.url("v", user_id="stays")) as stays:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(upgrade_request("/api/chat-api/ws/v?user_id=gone"))
        await read_until(stream, b'"welcome"')
        await wait_for_join(stays, "gone")
        # A TCP reset, no close frame: the client is just gone.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
        await wait_for_leave(stays, "gone")
        assert server.runtime.hub.connection_count() == 1


def _task_names() -> list[str]:
    names = []
    nurseries = list(trio.lowlevel.current_root_task().child_nurseries)  # type: ignore[union-attr]
    while nurseries:
        for task in nurseries.pop().child_tasks:
            names.append(task.name)
            nurseries.extend(task.child_nurseries)
    return names


def test_nothing_outlives_serve() -> None:
    threads = threading.active_count()
    config = dataclasses.replace(Config(), port=0, shutdown_grace_seconds=2.0)

    async def scenario() -> list[str]:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, config, shutdown_trigger=stop.wait))
            port = binds[0].rsplit(":", 1)[1]
            async with connect(f"ws://127.0.0.1:{port}/api/chat-api/ws/end") as client:
                await client.send({"body": "bye"})
                assert (await client.receive_type("chat"))["body"] == "bye"
                stop.set()
                assert await client.closed_code() == 1001
        return _task_names()  # serve has returned

    left = trio.run(scenario)
    ours = ("chat_service", "hypercorn", "quart", "tests")
    assert [name for name in left if name.startswith(ours) and "scenario" not in name] == []
    assert threading.active_count() == threads


class _DyingBroadcaster(LocalBroadcaster):
    """In-process fan-out whose task fails right after it started."""

    async def run(
        self,
        deliver: Deliver,
        epoch_seen: EpochSeen | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        await trio.lowlevel.checkpoint()
        raise RuntimeError("fan-out died")


def test_a_dying_broadcaster_ends_the_service_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    history = MemoryHistory(size=10, ttl=10)
    monkeypatch.setattr(
        runtime_module,
        "make_broadcaster",
        lambda config, metrics=None: (_DyingBroadcaster(history), history),
    )
    config = dataclasses.replace(Config(), port=0)
    with caplog.at_level(logging.INFO):
        assert entry_point.run(config, ChatRuntime(config)) == entry_point.EXIT_FAILURE
    critical = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in critical] == [
        "stopped by a failure: RuntimeError: fan-out died"
    ]
    assert critical[0].exc_info is None
