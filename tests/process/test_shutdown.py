"""Shutdown as operators see it: `python -m chat_service` on a real Redis,
drained by SIGTERM or SIGINT with real clients connected, and what a second
signal does."""

from __future__ import annotations

import json
import signal
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from pytest_redis.executor import RedisExecutor
from trio_websocket import ConnectionClosed

from ..helpers import WAIT, Client, connect, raw_request, raw_upgrade
from ..raw_websocket import TEXT, read_until, upgrade_request, ws_frame
from ..redis_helpers import redis_client, tcp_url
from ..server_process import ServerProcess, server_process

GRACE = 4.0
# What a stuck client is sent: more than the kernel buffers of both ends
# hold (tcp_wmem max 4 MiB plus our tiny receive buffer), so the server's
# write to it blocks and holds the drain open until the grace runs out.
FLOOD_FRAMES = 140
FLOOD_BODY = 60_000
STUCK_ENV = {
    "MAX_BODY_CHARS": str(FLOOD_BODY),
    "MAX_MESSAGE_BYTES": str(FLOOD_BODY + 1000),
    "RATE_LIMIT_PER_SECOND": "0",  # the flood and the senders' bursts are the point
    # The stuck client must still be there at the signal, which on a loaded
    # machine can come later than the 20 s the kernel would give it.
    "TCP_USER_TIMEOUT": "0",
}
ROOMS = 5
CLIENTS = 200
SENDERS_PER_ROOM = 2
MESSAGES_PER_SENDER = 30


@dataclass
class Member:
    client: Client
    room: str
    bodies: list[str] = field(default_factory=list)
    close_code: int | None = None

    async def listen(self) -> None:
        """Collect chat bodies until the server closes this client."""
        try:
            while True:
                frame = json.loads(await self.client.ws.get_message())
                if frame["type"] == "chat":
                    self.bodies.append(frame["body"])
        except ConnectionClosed as closed:
            self.close_code = closed.reason.code


async def open_stuck_client(service: ServerProcess) -> trio.SocketStream:
    """A client that floods its own room and never reads what comes back."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", service.port))
    stream = trio.SocketStream(sock)
    await stream.send_all(upgrade_request("/api/chat-api/ws/stuck"))
    await read_until(stream, b'"welcome"')
    body = json.dumps({"body": "x" * FLOOD_BODY}).encode()
    for _ in range(FLOOD_FRAMES):
        await stream.send_all(ws_frame(TEXT, body))
    return stream


async def _instance_connections(redis: RedisExecutor) -> list[dict[str, Any]]:
    """CLIENT LIST entries of chat_service instances (they name their connections)."""
    async with redis_client(redis) as client:
        entries = await client.client_list()
    return [entry for entry in entries if str(entry.get("name", "")).startswith("chat_service-")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_drains_every_accepted_message_then_1001(
    signum: signal.Signals, redis_server: RedisExecutor
) -> None:
    settings = {"SHUTDOWN_GRACE_SECONDS": str(GRACE), "REDIS_URL": tcp_url(redis_server)}
    async with (
        server_process(**settings, **STUCK_ENV) as service,
        AsyncExitStack() as stack,
    ):
        stuck = await stack.enter_async_context(await open_stuck_client(service))
        members = []
        for n in range(CLIENTS):
            room = f"room{n % ROOMS}"
            client = await stack.enter_async_context(connect(service.url(room)))
            members.append(Member(client, room))
        senders = members[: ROOMS * SENDERS_PER_ROOM]
        async with trio.open_nursery() as nursery:
            for member in members:
                nursery.start_soon(member.listen)
            assert len(await _instance_connections(redis_server)) >= 2  # publish, subscribe
            for n in range(MESSAGES_PER_SENDER):  # in flight when the signal lands
                for sender in senders:
                    await sender.client.send({"body": f"{sender.client.client_id}:{n}"})

            signalled = trio.current_time()
            service.process.send_signal(signum)
            await service.wait_for_line("draining clients=")
            readyz = b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"
            status, _, body = await raw_request(service.port, readyz)
            assert (status, json.loads(body)["reason"]) == (503, "draining")
            status, _, body = await raw_upgrade(service.port, "/api/chat-api/ws/late")
            assert (status, json.loads(body)["error"]) == (503, "shutting_down")

            with trio.fail_after(GRACE + WAIT):
                exit_code = await service.wait_exit()
            assert exit_code == 0
            assert trio.current_time() - signalled < GRACE + 1.0  # + interpreter exit
        await stuck.aclose()

    # Nothing outlives the process: its Redis connections are gone too.
    assert await _instance_connections(redis_server) == []
    assert all(m.close_code == 1001 for m in members)
    for room in {m.room for m in members}:
        in_room = [m for m in members if m.room == room]
        # Every message one member got (it was accepted) reached every member, in one order.
        assert all(m.bodies == in_room[0].bodies for m in in_room)
        assert in_room[0].bodies, "no message was in flight"
        # Each sender's messages, as far as accepted, in the order sent.
        for sender in (m for m in in_room if m in senders):
            own = [b for b in in_room[0].bodies if b.startswith(sender.client.client_id)]
            assert own == [f"{sender.client.client_id}:{n}" for n in range(len(own))]
    assert service.matching(rf"closed clients={CLIENTS + 1} forced=1 ")


async def test_second_signal_exits_at_once() -> None:
    async with server_process(**STUCK_ENV) as service, await open_stuck_client(service):
        service.process.send_signal(signal.SIGTERM)
        await service.wait_for_line("draining clients=")
        signalled = trio.current_time()
        service.process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            exit_code = await service.wait_exit()
        assert exit_code == 128 + signal.SIGTERM
        assert trio.current_time() - signalled < 2.0  # the default grace is 10 s
        assert service.matching("second signal received signal=SIGTERM")


async def test_idle_instance_stops_at_once_with_lifecycle_lines() -> None:
    async with server_process() as service:
        async with connect(service.url("calm")) as client:
            service.process.send_signal(signal.SIGTERM)
            assert await client.closed_code() == 1001
        with trio.fail_after(WAIT):
            assert await service.wait_exit() == 0
    for line in ("starting ", "ready listening=", "draining clients=1 ", "closed clients=1 "):
        assert len(service.matching(line)) == 1, line
    assert not service.matching("Traceback")
