"""How bytes reach the app: Hypercorn's trio worker, with each connection's
failures kept to that connection.

Hypercorn 0.18's trio `TCPServer.run` catches only `OSError`, and trio's
`serve_listeners` runs every connection in one nursery, so any other
exception from one connection's protocol handling cancels every connection
and ends the process. hypercorn#225 is such a case: after an upgrade request
with more bytes in the same write, Hypercorn hands those bytes to the
WebSocket stream before the handshake is answered; the stream answers 400
while the app, already started, answers 101; h11 refuses the 101 ("without
a pending proposal", the 400 cleared it), enters its ERROR state, and the
400's end of message then raises `LocalProtocolError` in the read loop.

`serve_http` is `hypercorn.trio.worker_serve` trimmed to what we use (plain
TCP: no TLS, no QUIC, no max_requests), with `ContainedTCPServer` in place
of `TCPServer`, and WebSocket streams that answer a bad frame with its RFC
6455 close code (`FailingWSStream`). Both rely on Hypercorn internals, so
pyproject pins the Hypercorn versions the tests cover.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import h2.exceptions
import h11
import hypercorn.protocol.h2
import hypercorn.protocol.h11
import trio
import wsproto.utilities
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.ws_stream import FrameTooLargeError, WSStream
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app
from wsproto.connection import ConnectionState as WSState
from wsproto.events import CloseConnection, Message, Ping
from wsproto.frame_protocol import CloseReason

from .failures import leaf_exceptions, summarize

__all__ = ["ContainedTCPServer", "serve_http"]

log = logging.getLogger(__name__)

# What a peer can make the protocol libraries raise by sending bad bytes:
# expected, so one warning line without a traceback is enough.
_PROTOCOL_ERRORS = (h11.ProtocolError, wsproto.utilities.ProtocolError, h2.exceptions.ProtocolError)


def _peer_address(stream: Any) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except (OSError, AttributeError, ValueError):
        return "unknown"
    return f"{host}:{port}"


class ContainedTCPServer(TCPServer):
    """Hypercorn's handler for one TCP connection, whose failures end only
    that connection.

    An `Exception` from this connection's protocol handling (Hypercorn, h11,
    h2, wsproto) is logged once at warning with the peer address; the base
    class has already closed the socket by then, and the app's task for the
    connection was cancelled with it. Protocol errors are logged as one
    line; anything else also gets its traceback, since it is a bug below
    the app. `trio.Cancelled` and other non-`Exception`s propagate. The
    app's own exceptions never get here: Hypercorn logs them per request.
    """

    async def run(self) -> None:
        """Serve this connection until it closes; never raises `Exception`.

        Cancellation (the server stopping) closes the connection.
        """
        peer = _peer_address(self.stream)
        try:
            await super().run()
        except* Exception as failures:
            _log_contained(peer, failures)

    def abort(self) -> None:
        """Close the socket now. Hypercorn writes under a shielded cancel
        scope, so cancelling cannot stop a write to a peer that stopped
        reading; closing the socket makes that write fail at once."""
        self.stream.socket.close()


def _log_contained(peer: str, failures: BaseExceptionGroup[Exception]) -> None:
    """One warning line for a connection ended by `failures`."""
    expected = all(isinstance(exc, _PROTOCOL_ERRORS) for exc in leaf_exceptions(failures))
    log.warning(
        "connection closed after a transport error peer=%s error=%s",
        peer,
        summarize(failures),
        exc_info=None if expected else failures,
    )


class FailingWSStream(WSStream):
    """Hypercorn's WebSocket stream, but a frame that wsproto cannot parse
    gets the close code RFC 6455 prescribes (1002, 1007) before the TCP
    connection closes; Hypercorn 0.18 closes it without a close frame.

    wsproto reports a parse failure as a received `CloseConnection` while
    its state is still OPEN (a real close frame makes it REMOTE_CLOSING).
    """

    async def _handle_events(self) -> None:
        # WSStream._handle_events as of Hypercorn 0.18, but for the parse-failure branch.
        for event in self.connection.events():
            if isinstance(event, Message):
                try:
                    self.buffer.extend(event)
                except FrameTooLargeError:
                    await self._send_wsproto_event(
                        CloseConnection(code=CloseReason.MESSAGE_TOO_BIG)
                    )
                    break
                if event.message_finished and self.app_put is not None:
                    await self.app_put(self.buffer.to_message())
                    self.buffer.clear()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if self.connection.state is WSState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                elif self.connection.state is WSState.OPEN:  # a frame failed to parse
                    await self._send_wsproto_event(CloseConnection(event.code, event.reason))
                await self.send(StreamClosed(stream_id=self.stream_id))


def _use_failing_ws_streams() -> None:
    """Make Hypercorn's HTTP/1.1 and HTTP/2 protocols create FailingWSStreams.

    They look the class up in their module when a WebSocket request comes
    in, and offer no other way to choose it.
    """
    hypercorn.protocol.h11.WSStream = FailingWSStream  # type: ignore[attr-defined]
    hypercorn.protocol.h2.WSStream = FailingWSStream  # type: ignore[attr-defined]


async def serve_http(
    app: Any,
    hyper: HypercornConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI `app` on `hyper.bind` until `shutdown_trigger` returns.

    Like `hypercorn.trio.serve`: runs the app's lifespan startup, listens,
    and reports `started(binds)` (e.g. ["http://127.0.0.1:8080"]). Once the
    trigger returns, it stops accepting, closes idle keep-alive connections,
    cancels the connections still open after `hyper.graceful_timeout` and
    closes their sockets, then runs the app's lifespan shutdown and returns. Cancellation stops
    everything at once, without the lifespan shutdown.
    """
    _use_failing_ws_streams()
    asgi = wrap_app(app, hyper.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(asgi, hyper, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            listeners, binds = _listen(hyper)
            state = ConnectionState(lifespan_state.copy())
            live: set[ContainedTCPServer] = set()

            async def handler(stream: trio.SocketStream) -> None:
                # Hypercorn annotates the stream as SSLStream; it serves plain ones too.
                server = ContainedTCPServer(asgi, hyper, context, state, stream)  # type: ignore[arg-type]
                live.add(server)
                try:
                    await server.run()
                finally:
                    live.discard(server)

            async with trio.open_nursery() as accepting:
                accepting.start_soon(
                    partial(trio.serve_listeners, handler, listeners, handler_nursery=connections)
                )
                task_status.started(binds)
                await shutdown_trigger()
                accepting.cancel_scope.cancel()
            await context.terminated.set()
            deadline = trio.current_time() + hyper.graceful_timeout
            connections.cancel_scope.deadline = deadline
            lifespan_nursery.start_soon(_abort_at, deadline, live)
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


async def _abort_at(deadline: float, live: set[ContainedTCPServer]) -> None:
    await trio.sleep_until(deadline)
    for server in list(live):
        server.abort()


def _listen(hyper: HypercornConfig) -> tuple[list[trio.SocketListener], list[str]]:
    sockets = hyper.create_sockets()
    listeners = []
    binds = []
    for sock in sockets.insecure_sockets:
        sock.listen(hyper.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
    return listeners, binds
