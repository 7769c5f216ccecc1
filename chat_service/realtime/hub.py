"""The hub: which local connections are in which rooms, fan-out of encoded
frames to them, and the heartbeat."""

from __future__ import annotations

from collections.abc import Iterator

import trio

from ..metrics import Metrics
from .broadcaster import Broadcaster
from .close_codes import CloseCode
from .connection import Connection
from .flush import FlushTicker
from .history import History, HistoryUnavailable, Reason, Start
from .message import (
    PING_FRAME,
    PresenceListing,
    Since,
    frame_seq,
    frame_ts,
    is_chat_frame,
    now_ms,
    subscribed_frame,
    unsubscribed_frame,
)
from .presence import Presence

__all__ = ["Hub"]

# Why a recovery failed when the history could not be read (Redis down).
UNAVAILABLE = "unavailable"


class _Room:
    """The local side of one room: its members; the connections whose
    `subscribed` frame is being prepared, with the room's frames that
    arrived meanwhile; and how many still wait for the room's subscription."""

    __slots__ = (
        "epoch",
        "epochs",
        "floors",
        "joining",
        "members",
        "pending",
        "renewing",
        "subscribed",
    )

    def __init__(self, subscribed: trio.Event) -> None:
        self.members: dict[str, Connection] = {}
        self.joining: dict[str, tuple[Connection, list[str | _NewEpoch]]] = {}
        self.pending = 0
        self.subscribed = subscribed
        # The epoch of the room's frames, when every member was told it (else
        # None); the epoch each member was told; and the members to tell the
        # new one before the room's next chat frame.
        self.epoch: str | None = None
        self.epochs: dict[str, str | None] = {}
        self.renewing: list[Connection] = []
        # A new member's last seq handed over when it joined: the history read
        # can answer before the pub/sub connection delivers frames it already
        # held, and those must not reach the member twice.
        self.floors: dict[str, int] = {}

    def is_empty(self) -> bool:
        return not self.members and not self.joining and not self.pending


class _NewEpoch(str):
    """In a joining connection's buffer: the frames after it are of this epoch."""

    __slots__ = ()


class Hub:
    """Rooms -> local connections, and each connection -> its rooms
    (`Connection.rooms`).

    The hub subscribes the broadcaster to a room when the room gets its
    first local connection and unsubscribes after the last one left, so an
    instance receives only the traffic of rooms it has members in. Members
    are counted in `presence` (default: a view of this instance alone),
    which fills the `subscribed` frames' presence. It counts deliveries,
    replays and fan-out latency into `metrics`, and shows its connections
    and rooms there.
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        history: History,
        *,
        heartbeat_interval: float,
        batch_window: float,
        presence: Presence | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._broadcaster = broadcaster
        self._metrics = metrics or Metrics()
        self._metrics.watch_connections(self.connection_count, lambda: len(self._rooms))
        self._history = history
        self._heartbeat_interval = heartbeat_interval
        self.flush_ticker = FlushTicker(batch_window)
        self.presence = Presence(interval=1.0) if presence is None else presence
        self._rooms: dict[str, _Room] = {}
        self._connections: dict[str, Connection] = {}
        self._receiving = True
        self._finish: tuple[CloseCode, str] | None = None
        self._emptied = trio.Event()

    def connection_count(self) -> int:
        """How many connections have joined and not yet left."""
        return len(self._connections)

    def connections(self) -> Iterator[Connection]:
        """Every joined connection (a snapshot: safe to close them while iterating)."""
        return iter(list(self._connections.values()))

    def connection(self, client_id: str) -> Connection | None:
        """The joined connection with id `client_id`, if it is on this instance."""
        return self._connections.get(client_id)

    def room_names(self) -> list[str]:
        """The rooms with at least one local connection (joined or joining)."""
        return list(self._rooms)

    def members(self, room: str) -> list[Connection]:
        """The local members of `room` (those that have its `subscribed` frame)."""
        local = self._rooms.get(room)
        return [] if local is None else list(local.members.values())

    async def join(self, conn: Connection, welcome: str, since: Since | None = None) -> None:
        """Add `conn` to the hub and to its path room (`conn.room`), once the
        room's subscription is in place.

        `welcome` and the room's `subscribed` frame (then, with `since`, the
        frames the client missed) are queued for `conn` in the same step
        that makes it a member, so `welcome` is the client's first frame and
        every frame of the room after it is delivered ("welcome means
        joined"). If cancelled while waiting, `leave(conn)` must still be
        called (as for any join).
        """
        if await self._subscribe(conn, conn.room, since, welcome):
            self._connections[conn.id] = conn
        if not self._receiving:
            conn.stop_receiving()
        if self._finish is not None:
            conn.finish(*self._finish)

    async def subscribe(self, conn: Connection, room: str, since: Since | None = None) -> None:
        """Add the joined `conn` to `room` once the room's subscription is in
        place, queueing its `subscribed` frame (and, with `since`, what it
        missed) in the same step ("subscribed means subscribed").

        The caller checks that `conn` is not in `room` yet and has room for
        it. If cancelled, `conn` may be left half-subscribed: `unsubscribe`
        or `leave` it.
        """
        await self._subscribe(conn, room, since, None)

    def unsubscribe(self, conn: Connection, room: str, reason: str) -> bool:
        """Take `conn` out of `room` and queue its `unsubscribed` frame;
        False (and nothing queued) if it was not in the room."""
        if room not in conn.rooms:
            return False
        self._remove(conn, room)
        conn.enqueue(unsubscribed_frame(room, reason))
        return True

    def leave(self, conn: Connection) -> None:
        """Remove `conn` from every room and from the hub (a no-op if it is
        in none). A plain function, so it is safe in a `finally` of a
        cancelled task."""
        for room in list(conn.rooms):
            self._remove(conn, room)
        self._connections.pop(conn.id, None)
        self._check_empty()

    async def _subscribe(
        self, conn: Connection, name: str, since: Since | None, welcome: str | None
    ) -> bool:
        """Make `conn` a member of room `name`; whether it became one (not if
        it left or was closed meanwhile)."""
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = _Room(self._broadcaster.subscribe(name))
        conn.rooms.add(name)
        room.pending += 1
        try:
            await room.subscribed.wait()
            await self.presence.wait_synced(name)
        finally:
            room.pending -= 1
        # From here on the room's frames reach `conn`'s buffer: whatever the
        # read below returns, nothing published after it can be missed.
        buffered: list[str | _NewEpoch] = []
        room.joining[conn.id] = (conn, buffered)
        try:
            start = await self._read_start(name, since)
        finally:
            room.joining.pop(conn.id, None)
        if self._rooms.get(name) is not room or name not in conn.rooms:
            return False  # left meanwhile
        room.members[conn.id] = conn
        presence = self.presence.join(name, conn.user_id)
        frames = [] if welcome is None else [welcome]
        frames.append(self._subscribed_frame(name, since, start, presence))
        epoch = None
        if start is not None:
            frames += start.frames
            epoch = start.position.epoch
            if start.frames:
                self._metrics.messages_replayed.inc(len(start.frames))
        last = start.position.seq if start is not None else 0
        renewed: str | None = None  # an epoch the client is still to be told
        for frame in buffered:
            if isinstance(frame, _NewEpoch):
                if frame != epoch:
                    epoch = renewed = str(frame)
                    last = 0
                continue
            seq = frame_seq(frame)
            if seq is not None and renewed is not None:
                frames.append(self._renewed_frame(name, renewed, seq - 1))
                renewed = None
            if seq is None or seq > last:  # else it was read too: the overlap
                frames.append(frame)
        room.epochs[conn.id] = epoch
        if last:
            room.floors[conn.id] = last
        if epoch != room.epoch:
            room.epoch = None  # members disagree: the next epoch_seen tells each
        if not conn.enqueue_many(frames):
            self._remove(conn, name)
            return False
        return True

    async def _read_start(self, room: str, since: Since | None) -> Start | None:
        try:
            return await self._history.start(room, since)
        except HistoryUnavailable:
            return None

    def _subscribed_frame(
        self, room: str, since: Since | None, start: Start | None, presence: PresenceListing
    ) -> str:
        if start is None:
            recovered = None if since is None else False
            reason = None if since is None else UNAVAILABLE
            return subscribed_frame(room, None, None, presence, recovered=recovered, reason=reason)
        return subscribed_frame(
            room,
            start.position.epoch,
            start.position.seq,
            presence,
            recovered=start.recovered,
            reason=start.reason,
        )

    def _renewed_frame(self, room: str, epoch: str, seq: int | None) -> str:
        """The `subscribed` frame of a room whose history was lost meanwhile."""
        presence = self.presence.snapshot(room)
        return subscribed_frame(
            room, epoch, seq, presence, recovered=False, reason=Reason.EPOCH_CHANGED
        )

    def epoch_seen(self, room_name: str, epoch: str) -> None:
        """The room's next frames are of `epoch`: members told another one
        get a new `subscribed` frame (`recovered: false`) before the room's
        next chat frame. A plain function (the broadcaster calls it)."""
        room = self._rooms.get(room_name)
        if room is None or room.epoch == epoch:
            return
        room.epoch = epoch
        for client_id, conn in room.members.items():
            if room.epochs.get(client_id) != epoch:
                room.epochs[client_id] = epoch
                room.renewing.append(conn)
                room.floors.pop(client_id, None)  # the new epoch's seq starts again
        for _, buffered in room.joining.values():
            buffered.append(_NewEpoch(epoch))

    def _remove(self, conn: Connection, name: str) -> None:
        conn.rooms.discard(name)
        room = self._rooms.get(name)
        if room is None:
            return
        if room.members.pop(conn.id, None) is not None:
            self.presence.remove(name, conn.user_id)
        room.epochs.pop(conn.id, None)
        room.floors.pop(conn.id, None)
        room.joining.pop(conn.id, None)
        if room.is_empty():
            del self._rooms[name]
            self._broadcaster.unsubscribe(name)
        self._check_empty()

    def _check_empty(self) -> None:
        if not self._rooms and not self._connections:
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
        while self._rooms or self._connections:
            await self._emptied.wait()

    def deliver(self, room_name: str, frame: str, skip: str | None = None) -> None:
        """Queue one encoded frame for every member of a room but `skip`.

        Never waits: a member whose queue is full is closed as a slow
        consumer by its `enqueue`, and the others get the frame. A
        connection whose `subscribed` frame is being prepared gets it in its
        buffer, which holds at most a send queue's worth.
        """
        room = self._rooms.get(room_name)
        if room is None:
            return
        if room.renewing and (seq := frame_seq(frame)) is not None:
            assert room.epoch is not None
            renewed = self._renewed_frame(room_name, room.epoch, seq - 1)
            for conn in room.renewing:
                conn.enqueue(renewed)
            room.renewing = []
        floors = room.floors
        seq = frame_seq(frame) if floors else None
        members = room.members
        for client_id, conn in members.items():
            if client_id == skip:
                continue
            if seq is not None and (floor := floors.get(client_id)) is not None:
                if seq <= floor:
                    continue  # it had this one already, from the history read
                del floors[client_id]
            conn.enqueue(frame)
        for client_id, (conn, buffered) in room.joining.items():
            if client_id != skip:
                buffered.append(frame)
                if len(buffered) > conn.queue_size:
                    conn.close(CloseCode.SLOW_CONSUMER, "slow consumer: send queue overflowed")
        if is_chat_frame(frame):
            self._count_fanout(frame, len(members) - (skip in members))

    def _count_fanout(self, chat_frame: str, recipients: int) -> None:
        """One fan-out's metrics: its recipients (counted at once, not one
        by one) and the time since the message's receipt (its `ts`)."""
        self._metrics.messages_delivered.inc(recipients)
        if (ts := frame_ts(chat_frame)) is not None:
            self._metrics.fanout_seconds.observe(max(0, now_ms() - ts) / 1000)

    def offer(self, room_name: str, frame: str) -> None:
        """Queue a `presence_diff` for every member of a room that has space
        for it: presence never closes a client as a slow consumer (one whose
        queue is full misses the diff). Members whose `subscribed` frame is
        being prepared skip it: that frame shows presence after the change."""
        room = self._rooms.get(room_name)
        if room is not None:
            # One per room per interval at most: counting each costs nothing.
            sent = sum(conn.offer(frame) for conn in room.members.values())
            self._metrics.presence_diffs_sent.inc(sent)

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
