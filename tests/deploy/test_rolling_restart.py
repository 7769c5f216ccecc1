"""A rolling restart through a real nginx loses nothing.

Three instances on one Redis behind nginx (the shipped site), clients on
all of them, three of them sending all along. The instances are restarted
one at a time (SIGTERM, start again on the same port); their clients get
1001, reconnect through nginx and subscribe again with `since`. At the end every client has
every message, in `seq` order, once. The time from the 1001 to the
recovered `subscribed` is printed (p50/p99) for the record.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import port_for
import trio
from pytest_redis.executor import RedisExecutor
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError

from ..helpers import Client, connect, raw_request
from ..redis_helpers import tcp_url
from ..server_process import server_process
from .conftest import StartNginx

ROOM = "hall"
CLIENTS = 9  # three per instance
SENDERS = 3
# Pacing of each sender, one message in flight at a time: a steady flow
# across every restart, a few hundred messages in all.
SEND_INTERVAL = 0.05
# What a real client waits before reconnecting after a 1001, at most, so
# that a restarted instance's clients do not all arrive in one instant;
# doubled after each failed attempt, up to RECONNECT_MAX.
RECONNECT_JITTER = 0.1
RECONNECT_MAX = 1.0
# A Python instance starting while the machine also runs two others, nginx
# and nine clients reconnecting.
STARTUP = 30.0
# The whole rolling restart, on a loaded machine: three drains and three
# Python start-ups.
DEADLINE = 120.0


class Board:
    """Wakes whoever waits for a condition on the clients' shared state."""

    def __init__(self) -> None:
        self._changed = trio.Event()

    def touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        with trio.fail_after(DEADLINE):
            while not condition():
                await self._changed.wait()


@dataclass
class Follower:
    """A client that stays in the room: it reconnects after 1001 with
    `since`, and (as a sender) resends an unanswered message with the same
    `client_msg_id`, as the protocol's safe retry."""

    name: str
    board: Board
    go: trio.Event  # senders start once everyone is in the room
    sends: bool = False
    chats: list[dict[str, Any]] = field(default_factory=list)
    epoch: str | None = None
    online: bool = False
    sent: int = 0  # messages the server has answered
    in_flight: bool = False  # message `sent` went out and has no answer yet
    closes: list[int] = field(default_factory=list)
    reconnect_seconds: list[float] = field(default_factory=list)
    sending: bool = True

    @property
    def last_seq(self) -> int:
        return self.chats[-1]["seq"] if self.chats else 0

    def url(self, port: int) -> str:
        """The socket's path room is the client's own; it joins ROOM with a
        `subscribe` frame, from `since` once it has been in it."""
        query = urlencode({"user_id": self.name})
        return f"ws://127.0.0.1:{port}/api/chat-api/ws/{self.name}?{query}"

    async def run(self, port: int) -> None:
        """Stay in the room until cancelled."""
        closed_at: float | None = None
        failed_attempts = 0
        while True:
            try:
                async with connect(self.url(port)) as client:
                    await self._subscribed(client, closed_at)
                    closed_at = None
                    failed_attempts = 0
                    async with trio.open_nursery() as nursery:
                        if self.sends:
                            nursery.start_soon(self._send, client)
                        await self._receive(client)
            except* ConnectionClosed as closed:
                self.closes.append(_close_code(closed))
                closed_at = closed_at or trio.current_time()
            except* (ConnectionRejected, HandshakeError, OSError):
                closed_at = closed_at or trio.current_time()  # nginx had no instance for us
                failed_attempts += 1
            self.online = False
            self.board.touch()
            backoff = min(RECONNECT_MAX, RECONNECT_JITTER * 2**failed_attempts)
            await trio.sleep(random.uniform(0, backoff))  # the client's own backoff

    async def _subscribed(self, client: Client, closed_at: float | None) -> None:
        subscribe: dict[str, Any] = {"type": "subscribe", "room": ROOM}
        if self.epoch is not None:
            subscribe["since"] = {"epoch": self.epoch, "seq": self.last_seq}
        await client.send(subscribe)
        frame = await _next(client, "subscribed")
        assert frame["room"] == ROOM
        if self.epoch is not None:
            assert frame["recovered"] is True, frame
            assert frame["epoch"] == self.epoch
        self.epoch = frame["epoch"]
        if closed_at is not None:
            self.reconnect_seconds.append(trio.current_time() - closed_at)
        self.online = True
        self.board.touch()

    async def _receive(self, client: Client) -> None:
        while True:
            frame = await _next(client, "chat")
            if frame.get("duplicate"):
                continue  # the answer to a retry: the original is in the room's order already
            assert frame["seq"] == self.last_seq + 1, (self.name, frame, self.last_seq)
            self.chats.append(frame)
            if frame["user_id"] == self.name and frame["client_msg_id"] == self._next_id():
                self.sent += 1
                self.in_flight = False
            self.board.touch()

    def _next_id(self) -> str:
        return f"{self.name}-{self.sent}"

    async def _send(self, client: Client) -> None:
        await self.go.wait()
        # After a reconnect, the message left unanswered goes again, with its
        # client_msg_id: published once whether or not it was before.
        while self.sending or self.in_flight:
            self.in_flight = True
            answered = self.sent
            await client.send(
                {"room": ROOM, "body": f"message {answered}", "client_msg_id": self._next_id()}
            )
            await self.board.until(lambda: self.sent > answered)  # noqa: B023
            await trio.sleep(SEND_INTERVAL)  # pacing, not waiting for anything


def _close_code(closed: BaseExceptionGroup[ConnectionClosed]) -> int:
    """The close code of the first ConnectionClosed in `closed`."""
    first: BaseException = closed
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, ConnectionClosed)
    return int(first.reason.code)


async def _next(client: Client, kind: str) -> dict[str, Any]:
    """The next frame of type `kind`; heartbeat pings are answered, presence
    skipped. No bound of its own: a quiet room is quiet (the test has one)."""
    while True:
        frame = json.loads(await client.ws.get_message())
        if frame["type"] == kind:
            return dict(frame)
        if frame["type"] == "ping":
            await client.send({"type": "pong"})
        else:
            assert frame["type"] == "presence_diff", frame


async def _connections(port: int) -> int:
    status, _, body = await raw_request(port, b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200, body
    return int(json.loads(body)["connections"])


@dataclass
class Instance:
    """One instance on a fixed port, restarted on request."""

    port: int
    settings: dict[str, str]
    exit_codes: list[int] = field(default_factory=list)
    drains: list[str] = field(default_factory=list)
    _restart: trio.Event = field(default_factory=trio.Event)
    _back: trio.Event = field(default_factory=trio.Event)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve, and start again after each `restart`, until cancelled."""
        announce = task_status.started
        while True:
            self._restart = trio.Event()
            async with server_process(
                ready_within=STARTUP, **self.settings, PORT=str(self.port)
            ) as process:
                announce()
                await self._restart.wait()
            # Leaving the block sent SIGTERM and waited for the exit.
            self.exit_codes.append(process.process.returncode)
            self.drains += process.matching("closed clients=")
            announce = self._back.set

    async def restart(self) -> None:
        """SIGTERM, start again on the same port; returns once it is ready."""
        self._back = trio.Event()
        self._restart.set()
        await self._back.wait()


def _sent_at_least(followers: list[Follower], counts: list[int]) -> Callable[[], bool]:
    return lambda: all(f.sent >= n for f, n in zip(followers, counts, strict=False))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def test_rolling_restart_loses_no_message(
    start_nginx: StartNginx, redis_server: RedisExecutor
) -> None:
    ports = set()
    while len(ports) < 3:
        ports.add(port_for.select_random())
    settings = {
        "REDIS_URL": tcp_url(redis_server),
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "RATE_LIMIT_PER_SECOND": "0",
        "REDIS_RECONNECT_MIN": "0.01",
        # Far below server_process's wait for the exit, so a drain is never killed.
        "SHUTDOWN_GRACE_SECONDS": "5",
    }
    instances = [Instance(port, settings) for port in sorted(ports)]
    board = Board()
    go = trio.Event()
    followers = [Follower(f"u{n}", board, go, sends=n < SENDERS) for n in range(CLIENTS)]
    senders = followers[:SENDERS]
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            for instance in instances:
                await nursery.start(instance.run)
            nginx = await start_nginx([instance.port for instance in instances])
            for follower in followers:
                nursery.start_soon(follower.run, nginx)
                # One at a time, so least_conn spreads them evenly.
                await board.until(lambda: follower.online)  # noqa: B023
            assert [await _connections(i.port) for i in instances] == [3, 3, 3]
            go.set()
            await board.until(_sent_at_least(senders, [3] * SENDERS))

            for instance in instances:
                await instance.restart()
                await board.until(lambda: all(f.online for f in followers))
                # Messages flow again before the next instance goes.
                await board.until(_sent_at_least(senders, [f.sent + 2 for f in senders]))

            for follower in senders:
                follower.sending = False
            await board.until(lambda: not any(f.in_flight for f in senders))
            total = sum(f.sent for f in senders)
            await board.until(lambda: all(f.last_seq >= total for f in followers))
            nursery.cancel_scope.cancel()

    sent_ids = {f"{f.name}-{n}" for f in senders for n in range(f.sent)}
    for follower in followers:
        assert [chat["seq"] for chat in follower.chats[:total]] == list(range(1, total + 1))
        assert {chat["client_msg_id"] for chat in follower.chats[:total]} == sent_ids
        assert follower.closes
        assert set(follower.closes) == {1001}
    for instance in instances:
        assert instance.exit_codes == [0]
        assert all("forced=0" in line for line in instance.drains), instance.drains
    reconnects = [s for f in followers for s in f.reconnect_seconds]
    print(
        f"rolling restart: {total} messages, {len(reconnects)} reconnects, "
        f"p50 {statistics.median(reconnects):.3f} s, p99 {_percentile(reconnects, 0.99):.3f} s"
    )
