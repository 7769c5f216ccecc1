"""The hub: which local connections are in which room, fan-out of encoded
frames to them, and the heartbeat."""

from __future__ import annotations

from collections.abc import Iterator

import trio

from .broadcaster import Broadcaster
from .close_codes import CloseCode
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
        self._receiving = True
        self._finish: tuple[CloseCode, str] | None = None
        self._emptied = trio.Event()

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
        if not self._receiving:
            conn.stop_receiving()
        if self._finish is not None:
            conn.finish(*self._finish)

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
        if not self._rooms:
            self._emptied.set()
            self._emptied = trio.Event()

    def stop_receiving(self) -> None:
        """Take no more frames from any client, now or joining later (the drain)."""
        self._receiving = False
        for conn in self.connections():
            conn.stop_receiving()

    async def wait_frames_handled(self) -> None:
        """Return once no connection is handling a client's frame (after
        `stop_receiving`: every frame taken from a client has been handled).
        Cancellation only stops the wait."""
        for conn in self.connections():
            await conn.wait_frame_handled()

    def finish_all(self, code: CloseCode, reason: str) -> None:
        """End every connection, now or joining later, once its queue is sent."""
        self._finish = (code, reason)
        for conn in self.connections():
            conn.finish(code, reason)

    def close_all(self, code: CloseCode, reason: str) -> None:
        """End every connection now, dropping what is queued."""
        for conn in self.connections():
            conn.close(code, reason)

    async def wait_empty(self) -> None:
        """Return once no connection is joined or joining.

        Cancellation only stops the wait.
        """
        while self._rooms:
            await self._emptied.wait()

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
