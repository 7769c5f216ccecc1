"""Fan-out between instances through Redis pub/sub (coredis, on trio).

Every room has one channel, `<prefix>{<room>}`. What a batch holds for a
room goes to Redis as one run of the publish script (`scripts/publish.lua`:
seq, history, dedupe and PUBLISH in one atomic step), pipelined with the
other rooms' runs. A frame reaches local clients only when it comes back
from Redis, so every instance delivers a room's frames in the one order
Redis gives them, which is the `seq` order. While Redis is unreachable the
instance fans out to its own clients alone (chat without `seq`, not kept)
and keeps reconnecting.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import coredis
import trio
from coredis.retry import NoRetryPolicy

from ..metrics import Metrics
from .backoff import Backoff
from .broadcaster import (
    Broadcaster,
    Deliver,
    EpochSeen,
    OnDuplicate,
    Published,
    PublishFailed,
    PublishOutcome,
    Sender,
)
from .message import frame_seq, with_seq
from .redis_history import (
    PUBLISH_SCRIPT,
    READ_SCRIPT,
    REDIS_DOWN,
    RedisClient,
    RedisHistory,
    RedisSession,
    RoomKeys,
)
from .redis_presence import RedisPresence
from .redis_wire import Command, Wire, WireSubscriber, open_wire

__all__ = ["RedisBroadcaster"]

log = logging.getLogger(__name__)

# Frames waiting for the publisher task before publish() makes its caller
# wait: a fraction of a second of a busy instance, a few MiB at most.
PUBLISH_QUEUE_SIZE = 1024
# Longest a connect, a command or a subscription may take. Redis answers in
# well under a millisecond on a LAN; 5 s means it is stuck or unreachable,
# and fan-out is better degraded to this instance than stalled.
REDIS_TIMEOUT = 5.0
# A skipped client's id travels in front of its frame. Frames are JSON
# objects (they start with "{"), client ids are hex: one space separates.
_SKIP_SEPARATOR = " "
# Anything but REDIS_DOWN is a bug and ends the service.
_REDIS_DOWN = REDIS_DOWN
# The publish script's first line of a PUBLISHed message: the room's epoch.
_EPOCH_MARK = "="
# A flush() marker sent through a room's own channel (on a cluster).
_FLUSH_MARK = "#"


# Payloads of one channel published together travel as one Redis message,
# one per line: frames are compact JSON and never hold a raw newline.
_PAYLOAD_SEPARATOR = "\n"


ScriptRun = tuple[list[str], list[str | int]]
"""One run of the publish script: its KEYS and ARGV."""

Publish = Callable[[str, list[ScriptRun], str | None], Awaitable[list[Any]]]
"""`publish(sha, runs, marker)`: the script `sha` once per run and, if
`marker` is not None, a PUBLISH of it to the control channel, sent together;
returns each run's reply. Raises what REDIS_DOWN counts."""


class Subscriber(Protocol):
    """A session's subscribed connection."""

    async def subscribe(self, *channels: str) -> None:
        """Subscribe; returns once Redis confirmed (`receive` must be running)."""

    async def unsubscribe(self, *channels: str) -> None:
        """Unsubscribe; returns once Redis confirmed (`receive` must be running)."""

    async def receive(self) -> list[tuple[str, str]]:
        """The next (channel, payload) messages, in order (maybe none)."""


def _wrap(frame: str, skip: str | None) -> str:
    return frame if skip is None else f"{skip}{_SKIP_SEPARATOR}{frame}"


def _unwrap(payload: str) -> tuple[str, str | None]:
    if payload.startswith("{"):
        return payload, None
    skip, _, frame = payload.partition(_SKIP_SEPARATOR)
    return frame, skip


@dataclass(slots=True)
class _Queued:
    """One payload waiting for the publisher: for a room (`room`), a chat
    frame (with its `outcome`) or any other frame; or a flush marker."""

    channel: str
    payload: str
    room: str | None = None
    outcome: PublishOutcome | None = None
    sender: Sender | None = None

    @property
    def dedupe_key(self) -> str:
        return "" if self.sender is None else "\n".join(self.sender)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class RedisBroadcaster(Broadcaster):
    """Room frames through Redis pub/sub, surviving Redis outages.

    `run` keeps one session with Redis at a time: a connection for a
    publisher task that sends whatever frames have queued up as one
    pipelined batch (one publish script run per room), and a subscribed
    connection whose frames go to `deliver`. `history` reads the rooms'
    history through the same session. The instance subscribes to a room's channel only while the
    room has local members. When the session fails, `run` logs it once,
    delivers from then on straight to local members (publishing nothing of
    that later, so nothing is duplicated), and reconnects with backoff,
    resubscribing the rooms that have local members.
    """

    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str,
        reconnect_min: float,
        reconnect_max: float,
        history_size: int,
        history_ttl: int,
        queue_size: int = PUBLISH_QUEUE_SIZE,
        metrics: Metrics | None = None,
    ) -> None:
        self._url = url
        self._metrics = metrics or Metrics()
        self._metrics.watch_redis(lambda: self._connected)
        self._prefix = channel_prefix
        self._history_size = history_size
        self._history_ttl = history_ttl
        self.history = RedisHistory(
            lambda: self._session, prefix=channel_prefix, size=history_size, ttl=history_ttl
        )
        """The rooms' sequence and history, read through this broadcaster's session."""
        self._session: RedisSession | None = None
        self._backoff = Backoff(reconnect_min, reconnect_max)
        self._queue_size = queue_size
        instance = secrets.token_hex(8)
        self.client_name = f"chat_service-{instance}"
        """The name of this instance's connections in Redis' CLIENT LIST."""
        # Room names never hold "#": this channel is no room's, yet it shares
        # the prefix, so ACLs on the prefix cover it.
        self.control_channel = f"{channel_prefix}#{instance}"
        """This instance's own channel, for flush() markers."""
        self._deliver: Deliver | None = None
        self._epoch_seen: EpochSeen | None = None
        self._connected = False
        self._outage_logged = False
        # Rooms with local members -> the event subscribe() returned.
        self._rooms: dict[str, trio.Event] = {}
        # Rooms subscribed on Redis in this session, and rooms to reconcile.
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._queue: deque[_Queued] = deque()
        self._flush_waiters: dict[str, trio.Event] = {}
        self._queue_filled = trio.lowlevel.ParkingLot()
        self._queue_space = trio.lowlevel.ParkingLot()
        self._rooms_changed = trio.lowlevel.ParkingLot()
        self._state_changed = trio.lowlevel.ParkingLot()

    def open_presence(self, ttl: float) -> RedisPresence:
        """Presence shares kept in this broadcaster's Redis, through its
        session, each for `ttl` seconds after its last refresh."""
        return RedisPresence(lambda: self._session, prefix=self._prefix, ttl=ttl)

    @property
    def unready_reason(self) -> str | None:
        """`redis_unavailable` until a session with Redis is up, and again
        from the moment it fails until the next one is."""
        return None if self._connected else "redis_unavailable"

    async def wait_connected(self, connected: bool = True) -> None:
        """Return once the session with Redis is up (or, with
        `connected=False`, down). Cancellation just ends the wait."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._connected != connected:
            await self._state_changed.park()

    async def run(
        self,
        deliver: Deliver,
        epoch_seen: EpochSeen | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; see the class docstring.

        Reports `started()` at once, before Redis is reached: until it is,
        the instance serves its own clients and is not ready. Cancellation
        closes every Redis connection before it returns.
        """
        self._deliver = deliver
        self._epoch_seen = epoch_seen
        task_status.started()
        try:
            while True:
                try:
                    await self._serve_session()
                except* _REDIS_DOWN as group:
                    self._disconnect(_first_error(group))
                else:  # a connection closed under coredis' feet (see _serve_session)
                    self._disconnect(ConnectionError("connection closed"))
                await self._backoff.wait()
        finally:
            self._disconnect(None)
            self._deliver = None

    async def publish(self, room: str, frame: str, *, skip: str | None = None) -> None:
        await self._send(_Queued(self._channel(room), _wrap(frame, skip), room))

    async def publish_chat(
        self,
        room: str,
        frame: str,
        *,
        sender: Sender | None = None,
        on_duplicate: OnDuplicate | None = None,
    ) -> PublishOutcome:
        """See `Broadcaster.publish_chat`. While Redis is down the frame goes
        to local members at once, without `seq`, and the outcome says so."""
        outcome = PublishOutcome(on_duplicate)
        await self._send(_Queued(self._channel(room), frame, room, outcome, sender))
        return outcome

    async def flush(self) -> None:
        """See `Broadcaster.flush`: a marker goes to this instance's own
        channel behind everything queued, and we wait for it to come back."""
        if not self._connected:
            await trio.lowlevel.checkpoint()
            return
        token = secrets.token_hex(8)
        arrived = self._flush_waiters[token] = trio.Event()
        try:
            await self._send(_Queued(self.control_channel, token))
            await arrived.wait()
        finally:
            del self._flush_waiters[token]

    def subscribe(self, room: str) -> trio.Event:
        """See `Broadcaster.subscribe`. The event is set once Redis has
        acknowledged the SUBSCRIBE, or at once while Redis is down (this
        instance's own frames reach the room without a subscription)."""
        subscribed = self._rooms[room] = trio.Event()
        if not self._connected or room in self._active:
            subscribed.set()
        else:
            self._dirty.add(room)
            self._rooms_changed.unpark_all()
        return subscribed

    def unsubscribe(self, room: str) -> None:
        self._rooms.pop(room, None)
        if self._connected:
            self._dirty.add(room)
            self._rooms_changed.unpark_all()

    async def _send(self, queued: _Queued) -> None:
        """Queue one payload for the publisher, waiting while the queue is
        full; while Redis is down, hand it straight to local delivery.
        If cancelled, the payload was not queued."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._connected and len(self._queue) >= self._queue_size:
            await self._queue_space.park()
        if self._deliver is None:
            raise trio.ClosedResourceError("the broadcaster is not running")
        if self._connected:
            self._queue.append(queued)
            self._queue_filled.unpark()
        else:
            self._deliver_unsent(queued)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _deliver_unsent(self, queued: _Queued) -> None:
        """Deliver what never reached Redis to local members only: a chat
        frame without `seq` (its outcome says so), nothing kept."""
        self._dispatch(queued.channel, queued.payload)
        if queued.outcome is not None:
            self._metrics.messages_published.inc()
            queued.outcome.resolve(Published(None, queued.payload))

    def _dispatch(self, channel: str, payload: str) -> None:
        """Hand a payload that came back from Redis (or never left, while
        Redis is down) to local delivery, or to its flush() waiter. A payload
        from Redis may hold several, one per line (see `_publish_batches`)."""
        if channel == self.control_channel:
            for token in payload.split(_PAYLOAD_SEPARATOR):
                if (arrived := self._flush_waiters.get(token)) is not None:
                    arrived.set()
            return
        assert self._deliver is not None
        room = channel[len(self._prefix) + 1 : -1]  # inside the hash tag's braces
        for part in payload.split(_PAYLOAD_SEPARATOR):
            if part.startswith(_FLUSH_MARK):
                if (arrived := self._flush_waiters.get(part[len(_FLUSH_MARK) :])) is not None:
                    arrived.set()
                continue
            if part.startswith(_EPOCH_MARK):
                if self._epoch_seen is not None:
                    self._epoch_seen(room, part[len(_EPOCH_MARK) :])
                continue
            frame, skip = _unwrap(part)
            self._deliver(room, frame, skip)

    async def _serve_session(self) -> None:
        """Connect, subscribe the rooms with local members, then publish
        and receive until a Redis error ends the session (it raises it).
        Cancellation closes the session's connections."""
        client = self._open_client()
        async with client:
            self._session = RedisSession(
                client,
                await client.script_load(self._publish_script),
                await client.script_load(READ_SCRIPT),
            )
            try:
                async with (
                    self._open_publisher(client) as publish,
                    self._open_pubsub(client) as pubsub,
                    trio.open_nursery() as nursery,
                ):
                    # Reads the subscriptions' confirmations too.
                    nursery.start_soon(self._receive, pubsub)
                    rooms = set(self._rooms)
                    await pubsub.subscribe(self.control_channel, *map(self._channel, rooms))
                    self._connect(rooms)
                    nursery.start_soon(self._publish_batches, publish)
                    nursery.start_soon(self._follow_rooms, pubsub)
            except* anyio.ClosedResourceError:
                # Cancelled together with its connection, coredis' (6.9) PubSub
                # cleanup writes UNSUBSCRIBE to the already closed connection.
                # The connection is gone either way; what else happened (the
                # cancellation) still propagates.
                pass

    @staticmethod
    def flush_mark(token: str) -> str:
        """A flush() marker as a room's payload: delivered to no client."""
        return _FLUSH_MARK + token

    # What differs on a Redis Cluster (see redis_cluster_broadcaster.py).
    _publish_script = PUBLISH_SCRIPT

    def _open_client(self) -> RedisClient:
        """A client for one session (not connected yet)."""
        return coredis.Redis.from_url(
            self._url,
            decode_responses=True,
            retry_policy=NoRetryPolicy(),
            client_name=self.client_name,
            connect_timeout=REDIS_TIMEOUT,
            stream_timeout=REDIS_TIMEOUT,
        )

    @contextlib.asynccontextmanager
    async def _open_publisher(self, client: RedisClient) -> AsyncIterator[Publish]:
        """The session's publisher: a connection of its own (see redis_wire)."""
        async with self._open_wire() as wire:

            async def publish(sha: str, runs: list[ScriptRun], marker: str | None) -> list[Any]:
                commands: list[Command] = [
                    ["EVALSHA", sha, len(keys), *keys, *args] for keys, args in runs
                ]
                if marker is not None:
                    commands.append(["PUBLISH", self.control_channel, marker])
                return (await wire.execute(commands))[: len(runs)]

            yield publish

    @contextlib.asynccontextmanager
    async def _open_pubsub(self, client: RedisClient) -> AsyncIterator[Subscriber]:
        """The session's subscriber: a connection of its own (see redis_wire)."""
        async with self._open_wire() as wire:
            yield WireSubscriber(wire, REDIS_TIMEOUT)

    def _open_wire(self) -> contextlib.AbstractAsyncContextManager[Wire]:
        return open_wire(self._url, client_name=self.client_name, answer_within=REDIS_TIMEOUT)

    def _connect(self, subscribed: set[str]) -> None:
        self._connected = True
        self._active = subscribed
        self._dirty = set(self._rooms).symmetric_difference(subscribed)
        self._backoff.reset()
        if self._dirty:
            self._rooms_changed.unpark_all()
        self._state_changed.unpark_all()
        if self._outage_logged:
            self._metrics.redis_reconnects.inc()
        state = "reconnected" if self._outage_logged else "connected"
        log.info("redis %s rooms=%d", state, len(subscribed))
        self._outage_logged = False

    def _disconnect(self, error: BaseException | None) -> None:
        """End the session's state: from now on frames go straight to local
        members. Frames still queued never reached Redis, so they are
        delivered here and now (a batch already sent may be lost, never
        doubled)."""
        if error is not None and not self._outage_logged:
            log.warning(
                "redis unavailable, fanning out to this instance only until it is back: %s",
                str(error) or type(error).__name__,
            )
            self._outage_logged = True
        self._connected = False
        self._session = None
        self._active = set()
        self._dirty = set()
        unsent, self._queue = self._queue, deque()
        if self._deliver is not None:
            for queued in unsent:
                self._deliver_unsent(queued)
        for event in [*self._rooms.values(), *self._flush_waiters.values()]:
            event.set()
        self._queue_space.unpark_all()
        self._state_changed.unpark_all()

    def _channel(self, room: str) -> str:
        return RoomKeys.of(self._prefix, room).channel

    async def _publish_batches(self, publish: Publish) -> None:
        """Send everything queued as one pipelined batch, again and again:
        one publish script run per room, its payloads in the order they
        were queued (one PUBLISH, one Redis message per room per batch
        rather than one per frame), and one PUBLISH for flush markers."""
        while True:
            while not self._queue:
                await self._queue_filled.park()
            batch, self._queue = self._queue, deque()
            self._queue_space.unpark_all()
            self._metrics.publish_batch_size.observe(len(batch))
            sent = trio.current_time()
            try:
                await self._publish_batch(publish, batch)
            except BaseException:
                # Sent or not, nobody can tell: never published twice.
                for queued in batch:
                    if queued.outcome is not None and not queued.outcome.done:
                        self._metrics.messages_dropped.labels("publish_failed").inc()
                        queued.outcome.resolve(PublishFailed("redis connection lost"))
                raise
            self._metrics.publish_seconds.observe(trio.current_time() - sent)

    async def _publish_batch(self, publish: Publish, batch: deque[_Queued]) -> None:
        by_room: dict[str, list[_Queued]] = {}
        markers: list[str] = []
        for queued in batch:
            if queued.room is None:
                markers.append(queued.payload)
            else:
                by_room.setdefault(queued.room, []).append(queued)
        assert self._session is not None
        sha = self._session.publish_sha
        runs: list[ScriptRun] = []
        for room, entries in by_room.items():
            keys = RoomKeys.of(self._prefix, room)
            args: list[str | int] = [
                *self.history.state_args(),
                self._history_size,
                self._history_ttl,
            ]
            for queued in entries:
                is_chat = queued.outcome is not None
                args += ["c" if is_chat else "e", queued.payload, queued.dedupe_key]
            runs.append(([*keys.state, keys.channel, keys.replid], args))
        marker = _PAYLOAD_SEPARATOR.join(markers) if markers else None
        replies = await publish(sha, runs, marker)
        for entries, reply in zip(by_room.values(), replies, strict=True):
            assert isinstance(reply, list | tuple)
            results = reply[1:]
            chats = (queued for queued in entries if queued.outcome is not None)
            for queued, result in zip(chats, results, strict=True):
                assert queued.outcome is not None
                if isinstance(result, int):
                    self._metrics.messages_published.inc()
                    queued.outcome.resolve(Published(result, with_seq(queued.payload, result)))
                else:
                    self._metrics.messages_dropped.labels("duplicate").inc()
                    original = str(result)
                    queued.outcome.resolve(Published(frame_seq(original), original, True))

    async def _follow_rooms(self, pubsub: Subscriber) -> None:
        """Subscribe and unsubscribe on Redis as rooms gain their first local
        member or lose their last, in batches."""
        while True:
            while not self._dirty:
                await self._rooms_changed.park()
            changed, self._dirty = self._dirty, set()
            gone = {room for room in changed if room not in self._rooms and room in self._active}
            new = {room for room in changed if room in self._rooms and room not in self._active}
            if gone:
                # Forget them first: a room re-joined meanwhile must wait
                # for its new subscription, not ride on the dying one.
                self._active -= gone
                await pubsub.unsubscribe(*map(self._channel, gone))
            if new:
                await pubsub.subscribe(*map(self._channel, new))
                self._active |= new
                for room in new:
                    if (subscribed := self._rooms.get(room)) is not None:
                        subscribed.set()

    async def _receive(self, pubsub: Subscriber) -> None:
        """Dispatch every message of the subscribed channels, in order."""
        while True:
            for channel, payload in await pubsub.receive():
                self._dispatch(channel, payload)
