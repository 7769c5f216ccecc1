"""The hub: which local connections are in which room, fan-out of encoded
frames to them, and the heartbeat."""

from __future__ import annotations

from collections.abc import Iterator

import trio

from .broadcaster import Broadcaster
from .connection import Connection
from .flush import FlushTicker
from .message import PING_FRAME

__all__ = ["Hub"]


class _Room:
    """The local side of one room: its members, and the connections still
    waiting for the room's subscription before they count as members."""

    __slots__ = ("members", "pending", "subscribed")

    def __init__(self, subscribed: trio.Event) -> None:
        self.members: dict[str, Connection] = {}
        self.pending = 0
        self.subscribed = subscribed

    def is_empty(self) -> bool:
        return not self.members and not self.pending


class Hub:
    """Rooms -> local connections.

    The hub subscribes the broadcaster to a room when the room gets its
    first local connection and unsubscribes after the last one left, so an
    instance receives only the traffic of rooms it has members in.
    """

    def __init__(
        self, broadcaster: Broadcaster, *, heartbeat_interval: float, batch_window: float
    ) -> None:
        self._broadcaster = broadcaster
        self._heartbeat_interval = heartbeat_interval
        self.flush_ticker = FlushTicker(batch_window)
        self._rooms: dict[str, _Room] = {}
        self._count = 0

    def connection_count(self) -> int:
        """How many connections have joined and not yet left."""
        return self._count

    def connections(self) -> Iterator[Connection]:
        """Every joined connection (a snapshot: safe to close them while iterating)."""
        return iter([conn for room in self._rooms.values() for conn in room.members.values()])

    def room_names(self) -> list[str]:
        """The rooms with at least one local connection (joined or joining)."""
        return list(self._rooms)

    async def join(self, conn: Connection, welcome: str) -> None:
        """Add `conn` to its room once the room's subscription is in place.

        `welcome` is queued for `conn` in the same step that makes it a
        member, so it is the client's first frame and every frame of the room
        after it is delivered ("welcome means joined"). If cancelled while
        waiting, `leave(conn)` must still be called (as for any join).
        """
        room = self._rooms.get(conn.room)
        if room is None:
            room = self._rooms[conn.room] = _Room(self._broadcaster.subscribe(conn.room))
        room.pending += 1
        try:
            await room.subscribed.wait()
        finally:
            room.pending -= 1
        if conn.enqueue(welcome):
            room.members[conn.id] = conn
            self._count += 1

    def leave(self, conn: Connection) -> None:
        """Remove `conn` from its room (a no-op if it is not in it).

        A plain function, so it is safe in a `finally` of a cancelled task.
        """
        room = self._rooms.get(conn.room)
        if room is None:
            return
        if room.members.pop(conn.id, None) is not None:
            self._count -= 1
        if room.is_empty():
            del self._rooms[conn.room]
            self._broadcaster.unsubscribe(conn.room)

    def deliver(self, room_name: str, frame: str, skip: str | None = None) -> None:
        """Queue one encoded frame for every member of a room but `skip`.

        Never waits: a member whose queue is full is closed as a slow
        consumer by its `enqueue`, and the others get the frame.
        """
        room = self._rooms.get(room_name)
        if room is None:
            return
        for client_id, conn in room.members.items():
            if client_id != skip:
                conn.enqueue(frame)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the heartbeat and the flush ticker of batched connections until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.flush_ticker.run)
            task_status.started()
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        """Send the heartbeat `ping` to every connection every interval."""
        while True:
            await trio.sleep(self._heartbeat_interval)
            for conn in self.connections():
                conn.enqueue(PING_FRAME)
