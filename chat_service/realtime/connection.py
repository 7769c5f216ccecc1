"""One client: its identity, a bounded outbox, and the two loops that move
frames between the outbox, the socket and the handler."""

from __future__ import annotations

import math
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import trio

from .close_codes import CloseCode
from .flush import FlushTicker
from .grant import Grant

if TYPE_CHECKING:
    from .rate_limit import RateLimiter

__all__ = ["Connection", "DirectWriter", "Transport"]

# How many queued frames one batched WebSocket frame carries at most: big
# enough to empty a busy queue in a few sends, small enough that one frame
# stays far below a client's receive buffer.
MAX_BATCH_FRAMES = 64


class Transport(Protocol):
    """What a connection needs of a WebSocket (`ASGIWebSocket` has it)."""

    async def send(self, data: str) -> None: ...

    async def receive(self) -> str | bytes:
        """The next message; raises `trio.ClosedResourceError` once the
        client has gone away."""
        ...


class DirectWriter(Protocol):
    """Writing a frame without waiting (`chat_service.direct_send.DirectSend`)."""

    def try_send(self, text: str) -> bytes | None: ...

    async def send_rest(self, data: bytes) -> None: ...


FrameHandler = Callable[["Connection", str | bytes], Awaitable[None]]
# What the outbox holds: a frame, several frames queued as one, or the rest
# of a frame the direct path wrote in part.
_Entry = str | bytes | tuple[str, ...]


class Connection:
    """One client: its path's room (`room`) and the rooms it is subscribed
    to (`rooms`, kept by the hub).

    Frames for the client go through `enqueue`, which never waits: a client
    whose queue is full is a slow consumer and is closed with 4001. `close`
    and `finish` are plain functions, so the hub, the heartbeat and the drain
    can end a connection from any task.
    """

    __slots__ = (
        "_accepting",
        "_direct",
        "_end_by",
        "_ended",
        "_flush_ticker",
        "_handled",
        "_handling",
        "_heartbeat_deadline",
        "_nursery",
        "_queue",
        "_receiving",
        "_receiving_stopped",
        "_regranted",
        "_sender",
        "_sending",
        "_transport",
        "_unsent",
        "address",
        "batch",
        "close_reason",
        "grant",
        "id",
        "limiter",
        "queue_size",
        "room",
        "rooms",
        "user_id",
    )

    def __init__(
        self,
        *,
        room: str,
        user_id: str,
        send_queue_size: int,
        grant: Grant | None = None,
        heartbeat_deadline: float,
        batch: bool = False,
        flush_ticker: FlushTicker | None = None,
        address: str = "",
    ) -> None:
        self.id = secrets.token_hex(8)
        self.room = room
        self.rooms: set[str] = set()
        self.user_id = user_id
        # What its token allows (rooms, expiry); a refresh replaces it (regrant).
        self.grant = Grant(user_id) if grant is None else grant
        self.address = address  # the client's IP (as forwarded by a trusted proxy)
        self.queue_size = send_queue_size
        self.batch = batch
        self._flush_ticker = flush_ticker if batch else None
        # Its rate limit's state, made at its first frame (`RateLimit`).
        self.limiter: RateLimiter | None = None
        self.close_reason: tuple[CloseCode, str] | None = None
        self._heartbeat_deadline = heartbeat_deadline
        # The outbox: at most `queue_size` entries waiting for the send loop.
        # An entry is one frame, or several queued at once (a subscribe's answer
        # and replay) that take one place: a recovering client has room for
        # its replay (at most HISTORY_SIZE frames) without counting as slow;
        # or the bytes of a frame written in part by the direct path. The
        # deque exists only while something waits in it (an empty deque is
        # 760 bytes; most connections write directly and queue nothing).
        self._queue: deque[_Entry] | None = None
        # False once closed or finished: nothing more is queued.
        self._accepting = True
        # Whether the send loop runs; its task while it waits for an entry
        # (woken by _put). For a client written to directly it starts with
        # the first entry that has to wait (a socket that was full): most
        # never have one, and an idle connection is a task smaller.
        self._sending = False
        self._sender: trio.lowlevel.Task | None = None
        # Where `serve` runs the send loop (its cancel scope is the
        # connection's), and what it sends with: set while serving.
        self._nursery: trio.Nursery | None = None
        self._transport: Transport | None = None
        # Writes frames at once while nothing is queued (see `use_direct`);
        # entries put in the outbox and not yet sent.
        self._direct: DirectWriter | None = None
        self._unsent = 0
        # Ending it: `serve` ends at once (`_ended`) or at `_end_by` (the
        # deadline of `serve`'s nursery, once serving).
        self._ended = False
        self._end_by = math.inf
        # The receive loop's one scope: its deadline is the heartbeat's, and
        # stop_receiving cancels it (between frames, never inside one).
        self._receiving = trio.CancelScope()
        self._receiving_stopped = False
        self._handling = False
        # Waiters of wait_frame_handled (the drain) and of wait_regranted
        # (the expiry watch), made for the first waiter: most connections
        # never have one.
        self._handled: trio.lowlevel.ParkingLot | None = None
        self._regranted: trio.lowlevel.ParkingLot | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} user={self.user_id} room={self.room}>"

    def use_direct(self, writer: DirectWriter) -> None:
        """Write frames with `writer`: from the send loop; and, unless the
        client is batched, at once from the task that enqueues them, while
        nothing is queued or being sent (a batched client's frames wait to
        be joined: a batch written at once leaves no time for the next one
        to fill)."""
        self._direct = writer

    def enqueue(self, frame: str) -> bool:
        """Queue `frame` for this client without waiting (or write it now,
        see `use_direct`).

        Returns False if it was not queued: the connection is closing, or
        its queue is full, in which case it is closed as a slow consumer.
        """
        rest = self._write_now(frame)
        if rest is None:
            return self._put(frame)
        return not rest or self._put(rest)

    def offer(self, frame: str) -> bool:
        """Queue `frame` (or write it now) if the queue has space for it,
        without waiting; unlike `enqueue`, a full queue does not close the
        connection (for frames a client can do without, such as presence
        diffs)."""
        rest = self._write_now(frame)
        if rest is None:
            return self._put(frame, close_when_full=False)
        # A frame written in part must be finished; the queue is empty.
        return not rest or self._put(rest)

    def enqueue_many(self, frames: list[str]) -> bool:
        """Queue `frames` for this client without waiting, taking one place
        in its queue (those not written now, see `use_direct`); as `enqueue`
        otherwise."""
        for start, frame in enumerate(frames):
            rest = self._write_now(frame)
            if rest is None:
                return self._put_frames(frames[start:])
            if rest:
                return self._put(rest) and self._put_frames(frames[start + 1 :])
        return True

    def _put_frames(self, frames: list[str]) -> bool:
        if not frames:
            return True
        return self._put(frames[0] if len(frames) == 1 else tuple(frames))

    def _write_now(self, frame: str) -> bytes | None:
        """Write `frame` at once, if the direct path can and nothing is
        queued or being sent: None if nothing was written, else the bytes
        the kernel did not take (b"" if it took all), to be sent next."""
        if self._direct is None or self.batch or self._unsent or self.close_reason is not None:
            return None
        return self._direct.try_send(frame)

    def _put(self, entry: _Entry, *, close_when_full: bool = True) -> bool:
        """Queue `entry`, counted in `_unsent` (a direct write never
        overtakes a queued entry); a full queue closes the connection as a
        slow consumer, unless `close_when_full` is False."""
        if not self._accepting:
            return False
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self.queue_size:
            if close_when_full:
                self.close(CloseCode.SLOW_CONSUMER, "slow consumer: send queue overflowed")
            return False
        queue.append(entry)
        self._unsent += 1
        if self._sending:
            self._wake_sender()
        else:
            self._start_sender()
        return True

    def _start_sender(self) -> None:
        """Run the send loop, if serving (`serve` starts it otherwise)."""
        if self._nursery is not None:
            assert self._transport is not None
            self._sending = True
            self._nursery.start_soon(self._send_loop, self._transport)

    @property
    def _writes_directly(self) -> bool:
        """Whether frames are written from the task that enqueues them, so that
        the send loop is needed only for what that could not write at once."""
        return self._direct is not None and not self.batch

    def _wake_sender(self) -> None:
        if (task := self._sender) is not None:
            self._sender = None
            trio.lowlevel.reschedule(task)

    async def _wait_for_entry(self) -> None:
        """Wait until `_put` queues an entry, or the outbox stops accepting."""
        self._sender = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort_wait)

    def _abort_wait(self, _: object) -> trio.lowlevel.Abort:
        self._sender = None
        return trio.lowlevel.Abort.SUCCEEDED

    def regrant(self, grant: Grant) -> None:
        """Replace what the client's token allows (a refresh), waking
        `wait_regranted`."""
        self.grant = grant
        if self._regranted is not None:
            self._regranted.unpark_all()

    async def wait_regranted(self) -> None:
        """Return once `regrant` is next called. Cancellation only stops the wait."""
        if self._regranted is None:
            self._regranted = trio.lowlevel.ParkingLot()
        await self._regranted.park()

    @property
    def queued(self) -> int:
        """Entries waiting in the outbox to be sent."""
        return 0 if self._queue is None else len(self._queue)

    def close(self, code: CloseCode, reason: str) -> None:
        """End this connection now, dropping what is queued; the first close
        code given is the one the client receives."""
        if self.close_reason is None:
            self.close_reason = (code, reason)
        self._end_now()

    def _end_now(self) -> None:
        """Stop serving at once, dropping what is queued."""
        self._accepting = False
        # Free the queued frames now: a send to a client that does not read
        # cannot be cancelled (Hypercorn shields it), and this connection lives
        # until that send ends.
        self._queue = None
        self._wake_sender()
        self._ended = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def finish(self, code: CloseCode, reason: str, *, within: float | None = None) -> None:
        """End this connection once every frame queued so far has been sent
        (the drain at shutdown); nothing more is queued after this.

        With `within` (a policy close: the client learns why from what was
        queued), it also takes no more frames from the client, and ends
        after `within` seconds even if not all was sent."""
        if self.close_reason is None:
            self.close_reason = (code, reason)
        self._accepting = False
        if self._sending:
            self._wake_sender()
        elif not self._queue:
            self._end_now()  # all sent already
        if within is not None:
            self.stop_receiving()
            self._end_by = min(self._end_by, trio.current_time() + within)
            if self._nursery is not None:
                self._nursery.cancel_scope.deadline = self._end_by

    def stop_receiving(self) -> None:
        """Take no more frames from the client (the drain at shutdown); a
        frame already being handled is finished, and sending goes on."""
        self._receiving_stopped = True
        if not self._handling:
            self._receiving.cancel()

    async def wait_frame_handled(self) -> None:
        """Return once no frame from the client is being handled; after
        `stop_receiving`, everything the client sent and we took has then
        been handled (published). Cancellation only stops the wait."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._handling:
            if self._handled is None:
                self._handled = trio.lowlevel.ParkingLot()
            await self._handled.park()

    async def serve(self, transport: Transport, on_frame: FrameHandler) -> None:
        """Run the receive loop in this task, and the send loop beside it
        once a frame has to wait (`_start_sender`), until the connection ends.

        Returns when `close` was called, `finish` has flushed the queue, the
        client has gone away (the transport's receive raised
        `trio.ClosedResourceError`; nothing more is sent), or nothing arrived
        for the heartbeat deadline (close reason 4000). Other exceptions
        from `on_frame` or the transport propagate. Cancellation from
        outside (the server stopping) stops both loops at once.
        """
        async with trio.open_nursery() as nursery:
            self._nursery, self._transport = nursery, transport
            try:
                nursery.cancel_scope.deadline = self._end_by
                if self._ended:
                    nursery.cancel_scope.cancel()
                if self._queue or not self._writes_directly:
                    self._start_sender()
                await self._receive_loop(transport, on_frame)
                # Sending goes on until `finish` has flushed (or `close`).
                await trio.sleep_forever()
            finally:
                # Not kept after serving: the nursery refers to this task,
                # whose frames refer to this connection.
                self._nursery = self._transport = None

    async def _send_loop(self, transport: Transport) -> None:
        """Send the outbox's entries in order; once it is empty and accepts
        no more (`finish`), end the connection."""
        while True:
            if not self._queue:
                self._queue = None  # nothing waits: free it (see __init__)
                if not self._accepting:
                    self._end_now()
                    return
                await self._wait_for_entry()
                continue
            entry = self._queue.popleft()
            try:
                await self._send_entry(transport, entry)
            finally:
                self._unsent -= 1
            # Not kept while waiting for the next: an idle client's last
            # entry (often its welcome and subscribed frames) is freed now.
            del entry

    async def _send_entry(self, transport: Transport, entry: _Entry) -> None:
        if isinstance(entry, bytes):
            assert self._direct is not None
            await self._direct.send_rest(entry)
        elif isinstance(entry, tuple):
            await self._send_several(transport, entry)
        elif self.batch:
            batch, several = self._coalesce(entry)
            await self._write(transport, batch)
            if several is not None:
                await self._send_several(transport, several)
        else:
            await self._write(transport, entry)
        if self._flush_ticker is not None and self.queued:
            # Busy: let the room's inbound traffic catch up, then flush with
            # every other busy connection at the next tick.
            await self._flush_ticker.wait_for_tick()

    async def _send_several(self, transport: Transport, frames: tuple[str, ...]) -> None:
        """Frames queued as one entry: one WebSocket message each, or batched."""
        step = MAX_BATCH_FRAMES if self.batch else 1
        for start in range(0, len(frames), step):
            await self._write(transport, "\n".join(frames[start : start + step]))

    async def _write(self, transport: Transport, text: str) -> None:
        """Send one WebSocket message: written at once by the direct path if
        it can (no trip through the server's send path), else by `transport`.
        Written at once, it is a checkpoint only if cancelled (the outbox is
        bounded, and waiting for the next entry is one); for a batched client
        a schedule point, as the server's send is: while its sender yields,
        its next frames are queued, and go out joined."""
        direct = self._direct
        if direct is not None:
            rest = direct.try_send(text)
            if rest is not None:
                if rest:
                    await direct.send_rest(rest)
                elif self.batch:
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.checkpoint_if_cancelled()
                return
        await transport.send(text)

    def _coalesce(self, first: str) -> tuple[str, tuple[str, ...] | None]:
        """`first` and whatever else is queued now, joined into one batched
        frame; and an entry of several frames that ended the batch, if one did."""
        frames = [first]
        queue = self._queue
        while queue and len(frames) < MAX_BATCH_FRAMES:
            entry = queue.popleft()
            self._unsent -= 1
            assert not isinstance(entry, bytes)  # no direct writes when batched
            if isinstance(entry, tuple):
                return "\n".join(frames), entry
            frames.append(entry)
        return "\n".join(frames), None

    async def _receive_loop(self, transport: Transport, on_frame: FrameHandler) -> None:
        with self._receiving:
            while not self._receiving_stopped:
                self._receiving.deadline = trio.current_time() + self._heartbeat_deadline
                try:
                    data = await transport.receive()
                except trio.ClosedResourceError:  # the client has gone away
                    self._end_now()
                    return
                self._receiving.deadline = math.inf
                self._handling = True
                try:
                    await on_frame(self, data)
                finally:
                    self._handling = False
                    if self._handled is not None:
                        self._handled.unpark_all()
        if self._receiving.cancelled_caught and not self._receiving_stopped:
            self.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
