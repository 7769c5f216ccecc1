"""The Broadcaster interface (how a room's frames reach every instance) and
the local, single-instance implementation."""

from __future__ import annotations

import abc
from collections.abc import Callable

import trio

__all__ = ["Broadcaster", "Deliver", "LocalBroadcaster"]

Deliver = Callable[[str, str, str | None], None]
"""`deliver(room, frame, skip_client_id)`: hands one encoded frame to the
local members of `room` (except `skip_client_id`). A plain function: it
never waits on a client."""


class Broadcaster(abc.ABC):
    """Carries encoded room frames from the connection that produced them to
    the local members of the room on every instance, in one order per room."""

    @abc.abstractmethod
    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled, handing received frames to `deliver`.

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
    the order of publishing is the order of delivery."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._subscribed = trio.Event()
        self._subscribed.set()

    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._deliver = deliver
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self._deliver = None

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
