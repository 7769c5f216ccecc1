"""The events a server hands one ASGI app instance: a bounded queue with one
reader, in a fraction of a trio memory channel's memory.

Hypercorn gives each WebSocket's app a `trio.open_memory_channel` of
`max_app_queue_size` events: its state, two channel objects and their
deques and ordered dicts take 1.7 KB, most of what an idle connection's
inbound side costs. `AppInbox` keeps what that use needs: one task reads
(the app), a few put (the connection's reader, and the stream as it
closes), and closing it ends both sides.
"""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["AppInbox"]


class AppInbox:
    """At most `limit` events waiting for the app; `put` waits while it is full.

    Behaves as a memory channel whose send side is closed by `close`:
    `receive` returns what was put, then raises `trio.EndOfChannel`; a `put`
    after `close` (or waiting when it happens) raises
    `trio.ClosedResourceError`. Both are checkpoints, as the channel's are.
    """

    __slots__ = ("_closed", "_events", "_limit", "_putters", "_reader")

    def __init__(self, limit: int) -> None:
        self._events: list[Any] = []
        self._limit = limit
        self._closed = False
        # The task waiting in `receive`, and those waiting in `put` (made
        # for the first: the app rarely falls `limit` events behind).
        self._reader: trio.lowlevel.Task | None = None
        self._putters: trio.lowlevel.ParkingLot | None = None

    async def put(self, event: Any) -> None:
        """Queue `event` for the app, once fewer than `limit` wait.
        Cancellation: nothing was queued."""
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while len(self._events) >= self._limit and not self._closed:
            if self._putters is None:
                self._putters = trio.lowlevel.ParkingLot()
            await self._putters.park()
            waited = True
        if self._closed:
            raise trio.ClosedResourceError("the app takes no more events")
        self._events.append(event)
        if (reader := self._reader) is not None:
            self._reader = None
            trio.lowlevel.reschedule(reader)
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> Any:
        """The next event, in the order put; `trio.EndOfChannel` once closed
        and empty. Cancellation: nothing was taken."""
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while not self._events:
            if self._closed:
                raise trio.EndOfChannel
            self._reader = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_receive)
            waited = True
        event = self._events.pop(0)
        if self._putters is not None:
            self._putters.unpark()
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return event

    def _abort_receive(self, _: object) -> trio.lowlevel.Abort:
        self._reader = None
        return trio.lowlevel.Abort.SUCCEEDED

    def close(self) -> None:
        """Take no more events: wake the reader (it gets what is queued,
        then `EndOfChannel`) and every waiting `put` (`ClosedResourceError`)."""
        self._closed = True
        if (reader := self._reader) is not None:
            self._reader = None
            trio.lowlevel.reschedule(reader)
        if self._putters is not None:
            self._putters.unpark_all()
