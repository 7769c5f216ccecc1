"""How bytes reach the app: Hypercorn's own trio worker (`hypercorn.trio.serve`,
so TLS, `sockets=` and the statsd logger work as Hypercorn documents them),
with four classes of ours put in place of Hypercorn's (`_install`):

- `ContainedTCPServer`: one connection's failures end only that connection.
  Hypercorn 0.18's trio `TCPServer.run` catches only `OSError`, and trio's
  `serve_listeners` runs every connection in one nursery, so any other
  exception from one connection's protocol handling would end the process
  (hypercorn#225: an upgrade request with more bytes in the same write makes
  h11 raise `LocalProtocolError` in the read loop). It also sets the
  kernel's bounds on a peer that stopped reading or vanished
  (`TCP_USER_TIMEOUT`, keepalive), and can be aborted: Hypercorn writes
  under a shielded cancel scope, so only closing the socket ends a write to
  a peer that does not read. What a connection costs is cut where
  Hypercorn spends it on every connection: no TLS handshake attempted on a
  plain socket, reads without a cancel scope each, and no idle task
  (`IdleSince`: `serve_http` closes idle connections).
- `ChatWSStream`: a bad frame gets its RFC 6455 close code; permessage-
  deflate only when configured, then bounded (`ws_deflate`); and once the
  app is done, nothing waits for it to read (Hypercorn's stream would block
  its reader and the app's last message on the full app channel forever,
  keeping both tasks and the socket). The app reads an `AppInbox`
  (`InboxTaskGroup`), and the handshake's state is let go once accepted.
- `HTTP11Protocol`: HTTP/1.1 only; the h2c upgrade and HTTP/2 prior
  knowledge are not honoured (README "Limits"); h11 is let go after a 101.
- `BoundedDeflate` (in `ws_deflate`).

Hypercorn looks each of them up as a module attribute when it needs one and
offers no other way to choose them, so this relies on Hypercorn internals:
pyproject pins the Hypercorn version the tests cover.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import h2.exceptions
import h11
import hypercorn.protocol
import hypercorn.protocol.h11
import hypercorn.protocol.ws_stream
import hypercorn.trio
import hypercorn.trio.run
import trio
import wsproto.utilities
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Response, StreamClosed
from hypercorn.protocol.h11 import H11Protocol, H11WSConnection
from hypercorn.protocol.ws_stream import FrameTooLargeError, WSStream
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.task_group import _handle as run_app
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.typing import ASGIReceiveEvent, ASGISendEvent, ConnectionState, WebsocketAcceptEvent
from hypercorn.typing import TaskGroup as TaskGroupLike
from hypercorn.utils import parse_socket_addr
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState as WSState
from wsproto.events import CloseConnection, Message, Ping
from wsproto.frame_protocol import CloseReason

from .app_inbox import AppInbox
from .direct_send import DIRECT_SEND, DirectSend, deflated_text_frame, text_frame
from .failures import leaf_exceptions, summarize
from .logs import fields
from .ws_deflate import INFLATE_LIMIT, BoundedDeflate

__all__ = ["ContainedTCPServer", "ServingConfig", "serve_http"]

log = logging.getLogger(__name__)

# What a peer can make the protocol libraries raise by sending bad bytes:
# expected, so one warning line without a traceback is enough.
_PROTOCOL_ERRORS = (h11.ProtocolError, wsproto.utilities.ProtocolError, h2.exceptions.ProtocolError)
# Keepalive probes once the idle time has passed: every few seconds, and
# TCP_USER_TIMEOUT (when set) decides when unanswered probes end it.
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_PROBES = 3
# How often per keep_alive_timeout the idle connections are looked at: one
# is closed between that timeout and a quarter more.
IDLE_CHECKS_PER_TIMEOUT = 4

# The TCP connection of the running task (its own, or the app's it started):
# an accepted WebSocket stream writes through it. Not kept on the stream,
# which would make a reference cycle (server -> protocol -> stream -> server)
# that only the garbage collector frees.
_CURRENT_SERVER: ContextVar[ContainedTCPServer | None] = ContextVar("_CURRENT_SERVER", default=None)


class ServingConfig(HypercornConfig):
    """Hypercorn's settings, plus ours that our classes read from it."""

    websocket_compression = False
    # Seconds written data may stay unacknowledged (0: the kernel's default).
    tcp_user_timeout = 0
    # Seconds of silence before keepalive probes start (0: no keepalive).
    tcp_keepalive_idle = 0
    # Called for each new TCP connection (before anything is read from it).
    on_connection: Callable[[], None] | None = None

    def __init__(self) -> None:
        super().__init__()
        # The connections being served, so that they can be aborted.
        self.live: set[ContainedTCPServer] = set()


def _socket_of(stream: Any) -> trio.socket.SocketType:
    inner = getattr(stream, "transport_stream", stream)  # under TLS
    sock: trio.socket.SocketType = inner.socket
    return sock


def _peer_address(sock: trio.socket.SocketType) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except (OSError, ValueError):
        return "unknown"
    return f"{host}:{port}"


def _bound_dead_peers(sock: trio.socket.SocketType, config: ServingConfig) -> None:
    """Let the kernel end the connection when the peer stops acknowledging
    (TCP_USER_TIMEOUT) or goes silent (keepalive)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    if config.tcp_user_timeout:
        milliseconds = config.tcp_user_timeout * 1000
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)
    if config.tcp_keepalive_idle:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, config.tcp_keepalive_idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


class ContainedTCPServer(TCPServer):
    """Hypercorn's handler for one TCP connection, whose failures end only
    that connection, and which `abort` can end at once.

    An `Exception` from this connection's protocol handling (Hypercorn, h11,
    h2, wsproto) is logged once at warning with the peer address; the base
    class has already closed the socket by then, and the app's task for the
    connection was cancelled with it. Protocol errors are logged as one
    line; anything else also gets its traceback, since it is a bug below
    the app. `trio.Cancelled` and other non-`Exception`s propagate. The
    app's own exceptions never get here: Hypercorn logs them per request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Since when no request is in progress; Hypercorn's idle task's place.
        self.idle = IdleSince()
        self.idle_task = self.idle  # type: ignore[assignment]

    async def run(self) -> None:
        """Serve this connection until it closes; never raises `Exception`.

        Cancellation (the server stopping) closes the connection, once a
        write in progress ends (see `abort`).
        """
        assert isinstance(self.config, ServingConfig)
        sock = _socket_of(self.stream)
        peer = _peer_address(sock)
        live = self.config.live
        live.add(self)
        _CURRENT_SERVER.set(self)
        if (on_connection := self.config.on_connection) is not None:
            on_connection()
        try:
            _bound_dead_peers(sock, self.config)
            if isinstance(self.stream, trio.SocketStream):
                await self._run_plain(self.stream.socket)
            else:
                await super().run()
        except* Exception as failures:
            _log_contained(peer, failures)
        finally:
            live.discard(self)
            # Hypercorn's protocol objects refer back to this server (their
            # `send`): a cycle that would keep the whole connection's memory
            # until the garbage collector's next full pass.
            vars(self).pop("protocol", None)

    async def _run_plain(self, sock: trio.socket.SocketType) -> None:
        # TCPServer.run as of Hypercorn 0.18, for a connection without TLS.
        # Hypercorn finds out that there is none by trying a TLS handshake:
        # an AttributeError raised through a `fail_after`, which was 12% of
        # the server's CPU in a connect storm.
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = ProtocolWrapper(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    False,
                    client,
                    server,
                    self.protocol_send,
                    "http/1.1",
                )
                await self.protocol.initiate()
                await self.idle_task.restart(self._task_group, self._idle_timeout)
                await self._read_data()
        except OSError:
            pass
        finally:
            await self._close()

    async def _read_data(self) -> None:
        # TCPServer._read_data as of Hypercorn 0.18, without its cancel scope
        # per read when there is no read timeout (Hypercorn's default), and
        # reading a plain TCP socket with `_receive_some`: a connection
        # waiting for its next frame holds no scope and three coroutines
        # fewer, about 2.5 KB of each idle WebSocket.
        if self.config.read_timeout or not isinstance(self.stream, trio.SocketStream):
            await super()._read_data()
            return
        sock = self.stream.socket
        while True:
            try:
                data = await _receive_some(sock)
            except (trio.ClosedResourceError, OSError):
                break
            await self.protocol.handle(RawData(data))
            if not data:
                break
        await self.protocol.handle(Closed())

    def abort(self) -> None:
        """Close the socket now: a write in progress, shielded from
        cancellation by Hypercorn, fails at once instead of waiting for a
        peer that stopped reading."""
        _socket_of(self.stream).close()


async def _receive_some(sock: trio.socket.SocketType) -> bytes:
    """What `trio.SocketStream.receive_some(MAX_RECV)` returns (b"" at EOF),
    read from `sock` as trio reads it, in one coroutine instead of four.

    Raises `trio.ClosedResourceError` once `sock` is closed (also while
    waiting: trio's `close` wakes the wait), `OSError` if the connection
    broke. Cancellation: as trio's (nothing read is lost).
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    while True:
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the socket was closed")
        try:
            data = os.read(fd, MAX_RECV)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data


class IdleSince:
    """Hypercorn's idle task of one connection (its `SingleTask`), without a
    task: since when the connection is idle (no request in progress), or
    None. `serve_http` closes one idle for `keep_alive_timeout`, and every
    idle one once serving stops (`_close_idle`), as that task did; starting
    and stopping it for every request was a sixth of a connect storm's CPU.
    """

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None

    async def restart(self, task_group: object, action: object) -> None:
        """Idle from now (Hypercorn's `action` is `_close_idle`'s to do)."""
        self.since = trio.current_time()

    async def stop(self) -> None:
        """Not idle: a request is in progress."""
        self.since = None


def _log_contained(peer: str, failures: BaseExceptionGroup[Exception]) -> None:
    """One warning line for a connection ended by `failures`."""
    expected = all(isinstance(exc, _PROTOCOL_ERRORS) for exc in leaf_exceptions(failures))
    log.warning(
        "connection closed after a transport error",
        extra=fields(peer=peer, error=summarize(failures)),
        exc_info=None if expected else failures,
    )


class HTTP11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol, with three differences.

    - No switch to HTTP/2: an `Upgrade: h2c` header is ignored (the request
      is answered in HTTP/1.1), and the HTTP/2 preface is a request h11
      refuses.
    - A connection that cannot be reused once the app has answered (the
      request's body was not all in yet: a refusal sent before the body
      was read, a 405, a 413) is really closed. Hypercorn closes it from
      the task that finished the response, which quart-trio cancels at
      that moment (its `handle_messages`): the close never ran, the socket
      stayed open, and the client's next request on it waited forever.
    - Once a WebSocket's 101 has gone out, h11's connection (its state and
      buffers, about 1.5 KB) is let go: from then on every byte is the
      WebSocket's, which Hypercorn passes through without h11.
    """

    async def stream_send(self, event: StreamEvent) -> None:
        await super().stream_send(event)
        upgraded = isinstance(event, Response) and event.status_code == 101
        if upgraded and isinstance(self.connection, H11WSConnection):
            # Hypercorn's pass-through keeps h11's connection only to write
            # the handshake's answer with it.
            self.connection.h11_connection = None  # type: ignore[assignment]

    async def _check_protocol(self, event: h11.Request) -> None:
        return

    async def _maybe_recycle(self) -> None:
        reusable = (
            not self.context.terminated.is_set()
            and self.connection.our_state is h11.DONE
            and self.connection.their_state is h11.DONE
        )
        if reusable:
            await super()._maybe_recycle()
            return
        await self._close_stream()
        # Closing the socket does not wait on the peer: safe to shield.
        with trio.CancelScope(shield=True):
            await self.can_read.set()
            await self.send(Closed())


class ChatWSStream(WSStream):
    """Hypercorn's WebSocket stream, with three differences.

    - A frame that wsproto cannot parse gets the close code RFC 6455
      prescribes (1002, 1007, 1009) before the TCP connection closes;
      Hypercorn 0.18 closes it without a close frame. wsproto reports a
      parse failure as a received `CloseConnection` while its state is still
      OPEN (a real close frame makes it REMOTE_CLOSING).
    - permessage-deflate is negotiated only with `websocket_compression`,
      then as `BoundedDeflate`; without it a compressed frame (RSV1) is a
      protocol error, 1002.
    - Once the app has finished, what the client still sends is dropped:
      the app no longer reads its channel, so waiting to put it there would
      hold this stream's reader, the app's task and the socket forever.

    Once accepted (without TLS), it offers the app `DirectSend` as the scope
    extension `DIRECT_SEND`. The app takes its events from an `AppInbox`
    (`InboxTaskGroup`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Hypercorn's TaskGroup protocol also has the context manager methods
        # that only its TCPServer uses; a stream spawns and nothing more.
        self.task_group = InboxTaskGroup(self.task_group)  # type: ignore[assignment]

    async def _accept(self, message: WebsocketAcceptEvent) -> None:
        assert isinstance(self.config, ServingConfig)
        if not self.config.websocket_compression:
            self.handshake.extensions = None  # as if the client offered none
        limit = INFLATE_LIMIT.set(self.config.websocket_max_message_size)
        try:
            await super()._accept(message)
        finally:
            INFLATE_LIMIT.reset(limit)
        # Of the upgrade request, Hypercorn asks only whether it was accepted,
        # and the app has read its headers by now: both let go (about 1 KB).
        self.handshake = _ACCEPTED  # type: ignore[assignment]
        self.scope["headers"] = []
        server = _CURRENT_SERVER.get()  # the app's task runs in its connection's context
        encode = _frame_encoder(self.connection)
        if server is not None and isinstance(server.stream, trio.SocketStream) and encode:
            self.scope["extensions"][DIRECT_SEND] = DirectSend(
                self.connection, server.send_lock, server.stream, encode=encode
            )

    async def app_send(self, message: ASGISendEvent | None) -> None:
        if message is None and self.app_put is not None:
            # app_put is the app inbox's bound `put`: closing the inbox wakes
            # a reader blocked on it, and nothing more (not even the
            # disconnect event) is put there.
            getattr(self.app_put, "__self__").close()  # noqa: B009 -- Hypercorn types it Callable
            self.app_put = None
        await super().app_send(message)

    async def _handle_events(self) -> None:
        # WSStream._handle_events as of Hypercorn 0.18, but for the parse-failure
        # branch and the app that is gone.
        for event in self.connection.events():
            if isinstance(event, Message):
                try:
                    self.buffer.extend(event)
                except FrameTooLargeError:
                    await self._send_wsproto_event(
                        CloseConnection(code=CloseReason.MESSAGE_TOO_BIG)
                    )
                    break
                if event.message_finished:
                    message = self.buffer.to_message()
                    self.buffer.clear()
                    try:
                        if self.app_put is not None:
                            await self.app_put(message)
                    except trio.ClosedResourceError:
                        pass  # the app finished while we waited for it
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if self.connection.state is WSState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                elif self.connection.state is WSState.OPEN:  # a frame failed to parse
                    await self._send_wsproto_event(CloseConnection(event.code, event.reason))
                await self.send(StreamClosed(stream_id=self.stream_id))


class InboxTaskGroup:
    """A connection's Hypercorn task group, whose `spawn_app` hands the app
    its events through an `AppInbox` instead of a memory channel."""

    __slots__ = ("_inner",)

    def __init__(self, inner: TaskGroupLike) -> None:
        self._inner = inner

    async def spawn_app(
        self,
        app: Any,
        config: HypercornConfig,
        scope: Any,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        """Start the app for `scope` in the connection's nursery, as
        Hypercorn's does (`run_app`); returns what puts an event for it."""
        inbox = AppInbox(config.max_app_queue_size)
        self._inner.spawn(
            run_app,
            app,
            config,
            scope,
            inbox.receive,
            send,
            trio.to_thread.run_sync,
            trio.from_thread.run,
        )
        return inbox.put

    def spawn(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._inner.spawn(func, *args)


class _Accepted:
    """What WSStream asks of its handshake once it was accepted."""

    accepted = True


_ACCEPTED = _Accepted()


def _frame_encoder(connection: WSConnection) -> Callable[[str], bytes] | None:
    """How `DirectSend` encodes a text frame for `connection`'s negotiated
    extensions: plain, or deflated at the window of our `BoundedDeflate`."""
    extensions = connection._proto.extensions  # the negotiated ones (wsproto internals)
    if not extensions:
        return text_frame
    if len(extensions) == 1 and isinstance(deflate := extensions[0], BoundedDeflate):
        return functools.partial(deflated_text_frame, window_bits=deflate.server_max_window_bits)
    return None


def _install() -> None:
    """Make Hypercorn use our classes (it looks each up in its module)."""
    hypercorn.trio.run.TCPServer = ContainedTCPServer  # type: ignore[attr-defined]
    hypercorn.protocol.H11Protocol = HTTP11Protocol  # type: ignore[attr-defined]
    hypercorn.protocol.h11.WSStream = ChatWSStream  # type: ignore[attr-defined]
    hypercorn.protocol.ws_stream.PerMessageDeflate = BoundedDeflate  # type: ignore[attr-defined,assignment]


async def serve_http(
    app: Any,
    hyper: ServingConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI `app` as `hypercorn.trio.serve` does, until
    `shutdown_trigger` returns.

    Runs the app's lifespan startup, listens, and reports `started(binds)`
    (e.g. ["http://127.0.0.1:8080"]). Once the trigger returns, it stops
    accepting, closes idle keep-alive connections, cancels the connections
    still open after `hyper.graceful_timeout` and closes their sockets, then
    runs the app's lifespan shutdown and returns. Cancellation closes every
    connection's socket at once (so no peer can hold it), without the
    lifespan shutdown.
    """
    _install()
    stopping = trio.Event()
    async with trio.open_nursery() as aborting:

        async def trigger() -> None:
            await shutdown_trigger()
            stopping.set()
            deadline = trio.current_time() + hyper.graceful_timeout
            aborting.start_soon(_abort_at, deadline, hyper.live)

        aborting.start_soon(_abort_when_cancelled, hyper.live)
        aborting.start_soon(_close_idle, hyper.live, hyper.keep_alive_timeout, stopping)
        await hypercorn.trio.serve(app, hyper, shutdown_trigger=trigger, task_status=task_status)
        aborting.cancel_scope.cancel()


async def _close_idle(
    live: set[ContainedTCPServer], idle_limit: float, stopping: trio.Event
) -> None:
    """Close each connection idle for `idle_limit` seconds (an HTTP keep-alive
    connection between requests, or one whose request has not come in
    yet), and each idle one at once after `stopping`. Runs until cancelled."""
    tick = idle_limit / IDLE_CHECKS_PER_TIMEOUT
    while True:
        if stopping.is_set():
            await trio.sleep(tick)
        else:
            with trio.move_on_after(tick):
                await stopping.wait()
        now = trio.current_time()
        for server in list(live):
            since = server.idle.since
            if since is not None and (stopping.is_set() or now - since >= idle_limit):
                server.abort()


async def _abort_at(deadline: float, live: set[ContainedTCPServer]) -> None:
    await trio.sleep_until(deadline)
    for server in list(live):
        server.abort()


async def _abort_when_cancelled(live: set[ContainedTCPServer]) -> None:
    # Serving has returned (nothing is live then) or is being cancelled.
    try:
        await trio.sleep_forever()
    finally:
        for server in list(live):
            server.abort()
