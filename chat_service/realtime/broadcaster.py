"""The Broadcaster interface (how a room's frames reach every instance),
the outcome of publishing a chat message, and the local, single-instance
implementation."""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..metrics import Metrics
from .history import MemoryHistory
from .message import as_duplicate

__all__ = [
    "Broadcaster",
    "Deliver",
    "EpochSeen",
    "LocalBroadcaster",
    "OnDuplicate",
    "PublishFailed",
    "PublishOutcome",
    "Published",
    "Sender",
]

Deliver = Callable[[str, str, str | None], None]
"""`deliver(room, frame, skip_client_id)`: hands one encoded frame to the
local members of `room` (except `skip_client_id`). A plain function: it
never waits on a client."""

EpochSeen = Callable[[str, str], None]
"""`epoch_seen(room, epoch)`: the frames delivered next for `room` are of
`epoch`. A plain function, called before those frames are delivered."""

Sender = tuple[str, str]
"""(user_id, client_msg_id) of a chat message: what makes a retry a retry."""

OnDuplicate = Callable[[str], object]
"""Receives the original's frame, marked `duplicate`, when a chat message
was a retry (it is not published again)."""


class PublishFailed(Exception):
    """A chat message may or may not have been published: the connection to
    Redis broke while its batch was on the way."""


@dataclass(frozen=True, slots=True)
class Published:
    """What became of a chat message: its `seq` (None while Redis is down:
    delivered on this instance only, not in history) and its frame as
    delivered; for a retry, the original's, with `duplicate` True."""

    seq: int | None
    frame: str
    duplicate: bool = False

    def fields(self) -> dict[str, Any]:
        """The frame's fields (`id`, `room`, `seq`, `ts`, ...)."""
        fields: dict[str, Any] = json.loads(self.frame)
        return fields


class PublishOutcome:
    """The awaitable outcome of one `publish_chat`."""

    __slots__ = ("_done", "_on_duplicate", "_result")

    def __init__(self, on_duplicate: OnDuplicate | None = None) -> None:
        self._done = trio.Event()
        self._result: Published | PublishFailed | None = None
        self._on_duplicate = on_duplicate

    @property
    def done(self) -> bool:
        """Whether the outcome is known (`resolve` was called)."""
        return self._result is not None

    def resolve(self, result: Published | PublishFailed) -> None:
        """Set the outcome (once) and hand a duplicate to `on_duplicate`."""
        if self._result is not None:
            return
        self._result = result
        self._done.set()
        if isinstance(result, Published) and result.duplicate and self._on_duplicate:
            self._on_duplicate(as_duplicate(result.frame))

    async def wait(self) -> Published:
        """The outcome, once known. Raises `PublishFailed` if it is unknown
        for good. Cancellation only stops the wait."""
        await self._done.wait()
        assert self._result is not None
        if isinstance(self._result, PublishFailed):
            raise self._result
        return self._result


class Broadcaster(abc.ABC):
    """Carries encoded room frames from the connection that produced them to
    the local members of the room on every instance, in one order per room."""

    @abc.abstractmethod
    async def run(
        self,
        deliver: Deliver,
        epoch_seen: EpochSeen | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled, handing received frames to `deliver` (and
        the epoch of each room's next frames to `epoch_seen`).

        Reports `started()` once `publish` and `subscribe` can be used.
        Cancellation ends it and releases every connection it holds.
        """

    @abc.abstractmethod
    async def publish(self, room: str, frame: str, *, skip: str | None = None) -> None:
        """Send `frame` to every member of `room` on every instance, except
        the client with id `skip`.

        Waits only while the outgoing queue is full (backpressure). If
        cancelled, the frame was either queued whole or not at all.
        """

    @abc.abstractmethod
    async def publish_chat(
        self,
        room: str,
        frame: str,
        *,
        sender: Sender | None = None,
        on_duplicate: OnDuplicate | None = None,
    ) -> PublishOutcome:
        """Give the chat `frame` (encoded once, without `seq`) the room's
        next `seq`, keep it in history and send it to every member of
        `room` on every instance, the sender included; all in one step, so
        the `seq` order is the delivery order everywhere.

        With `sender`, a message that user already sent to the room under
        that client_msg_id (still in history) is not published again: the
        outcome is the original, also handed to `on_duplicate`.
        Waits only while the outgoing queue is full; the returned outcome
        can be awaited. If cancelled, the frame was queued whole or not at all.
        """

    @abc.abstractmethod
    async def flush(self) -> None:
        """Return once every frame published before the call has been handed
        to `deliver` on this instance (for rooms it is subscribed to), or
        given up on if fan-out is down. Used by the drain at shutdown.
        If cancelled, frames may still be in flight.
        """

    @abc.abstractmethod
    def subscribe(self, room: str) -> trio.Event:
        """Start receiving `room`'s frames; the event is set once every frame
        published to the room from then on will be delivered here.

        Called by the hub when a room gets its first local member.
        """

    @abc.abstractmethod
    def unsubscribe(self, room: str) -> None:
        """Stop receiving `room`'s frames (its last local member left)."""

    @property
    def unready_reason(self) -> str | None:
        """Why fan-out is degraded right now (shown by /readyz), or None."""
        return None


class LocalBroadcaster(Broadcaster):
    """In-process fan-out for one instance: `publish` delivers at once, so
    the order of publishing is the order of delivery; `seq` and history
    come from `history`, in the same step."""

    def __init__(self, history: MemoryHistory, *, metrics: Metrics | None = None) -> None:
        self._history = history
        self._metrics = metrics or Metrics()
        self._deliver: Deliver | None = None
        self._epoch_seen: EpochSeen | None = None
        self._subscribed = trio.Event()
        self._subscribed.set()

    async def run(
        self,
        deliver: Deliver,
        epoch_seen: EpochSeen | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._deliver = deliver
        self._epoch_seen = epoch_seen
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self._deliver = None

    async def publish_chat(
        self,
        room: str,
        frame: str,
        *,
        sender: Sender | None = None,
        on_duplicate: OnDuplicate | None = None,
    ) -> PublishOutcome:
        if self._deliver is None:
            raise trio.ClosedResourceError("the broadcaster is not running")
        appended = self._history.append(room, frame, sender)
        outcome = PublishOutcome(on_duplicate)
        if appended.duplicate:
            self._metrics.messages_dropped.labels("duplicate").inc()
        else:
            self._metrics.messages_published.inc()
            if self._epoch_seen is not None:
                self._epoch_seen(room, appended.epoch)
            self._deliver(room, appended.frame, None)
        outcome.resolve(Published(appended.seq, appended.frame, appended.duplicate))
        await trio.lowlevel.checkpoint()
        return outcome

    async def publish(self, room: str, frame: str, *, skip: str | None = None) -> None:
        if self._deliver is None:
            raise trio.ClosedResourceError("the broadcaster is not running")
        self._deliver(room, frame, skip)
        await trio.lowlevel.checkpoint()

    async def flush(self) -> None:
        # publish() delivers before it returns: nothing is ever in flight.
        await trio.lowlevel.checkpoint()

    def subscribe(self, room: str) -> trio.Event:
        return self._subscribed

    def unsubscribe(self, room: str) -> None:
        pass
