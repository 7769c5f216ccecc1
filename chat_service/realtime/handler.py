"""The Handler: drives one accepted WebSocket through the protocol, with the
application's hooks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import h11
import trio

from ..config import Config
from ..direct_send import DIRECT_SEND
from ..logs import fields
from ..metrics import PEER_CLOSED, Metrics
from .broadcaster import Broadcaster, OnDuplicate, PublishOutcome
from .close_codes import CloseCode
from .connection import Connection, DirectWriter, Transport
from .expiry import watch_expiry
from .grant import FORBIDDEN_ROOM_DETAIL, AuthError, Grant, TokenCheck
from .hub import Hub
from .message import (
    PROTOCOL_VERSION,
    ChatRequest,
    ClientFrame,
    ErrorCode,
    FrameError,
    Message,
    Ping,
    Refresh,
    Since,
    Subscribe,
    Unsubscribe,
    encode,
    error_frame,
    new_message_id,
    now_ms,
    parse_client_frame,
)
from .rate_limit import limit_rate

__all__ = ["Handler", "HandlerConfig", "WebSocket"]

log = logging.getLogger(__name__)

# Longest we wait for a close frame to go out, or for on_disconnect, once a
# connection is over: the client may be gone, and cleanup must not hang.
CLOSE_TIMEOUT = 2.0

_BINARY_REFUSED = error_frame(ErrorCode.BINARY_NOT_SUPPORTED, "send JSON in text frames")


class WebSocket(Transport, Protocol):
    """What the handler needs of an upgrade request's WebSocket
    (`chat_service.asgi_websocket.ASGIWebSocket`)."""

    async def accept(self) -> None: ...

    async def close(self, code: int, reason: str = "") -> None: ...


async def log_connect(conn: Connection) -> None:
    """Default `on_connect`: log the new client."""
    log.info(
        "client connected",
        extra=fields(client_id=conn.id, user_id=conn.user_id, room=conn.room, address=conn.address),
    )


async def log_disconnect(conn: Connection) -> None:
    """Default `on_disconnect`: log the departed client."""
    code = None if conn.close_reason is None else int(conn.close_reason[0])
    log.info(
        "client disconnected",
        extra=fields(
            client_id=conn.id, user_id=conn.user_id, room=conn.room, code=code or PEER_CLOSED
        ),
    )


async def pass_message(conn: Connection, message: Message) -> Message | None:
    """Default `on_message`: send every message as it is."""
    return message


@dataclass(frozen=True, slots=True)
class HandlerConfig:
    """How the handler publishes, and the application's hooks.

    `on_message` returns the message to send (possibly changed) or None to
    drop it. A hook that raises closes its own connection with 1011.
    """

    broadcaster: Broadcaster
    on_connect: Callable[[Connection], Awaitable[None]] = log_connect
    on_disconnect: Callable[[Connection], Awaitable[None]] = log_disconnect
    on_message: Callable[[Connection, Message], Awaitable[Message | None]] = pass_message
    auth_required: bool = False


class Handler:
    """Runs the protocol for each accepted WebSocket.

    `verify_token` checks the token of a `refresh` frame (auth on); without
    it, a `refresh` is refused. Events are counted in `metrics`.
    """

    def __init__(
        self,
        hub: Hub,
        handler_config: HandlerConfig,
        config: Config,
        metrics: Metrics | None = None,
        *,
        verify_token: TokenCheck | None = None,
    ) -> None:
        self._hub = hub
        self._hooks = handler_config
        self._broadcaster = handler_config.broadcaster
        self._config = config
        self._metrics = metrics or Metrics()
        self._verify_token = verify_token
        # One for every connection: a connection holds only its limiter's state.
        self._limited_on_frame = limit_rate(self._on_frame, config, self._metrics)

    async def handle(
        self,
        websocket: WebSocket,
        *,
        room: str,
        user_id: str,
        batch: bool,
        since: Since | None = None,
        address: str = "",
        grant: Grant | None = None,
    ) -> None:
        """Serve one client (from IP `address`, allowed what `grant` allows:
        default, everything), subscribed to `room` (recovering from `since`)
        to begin with, until it leaves or is closed; or until its grant's
        `exp` passes without a refresh (4002).

        Closes the WebSocket with the protocol's code for why it ended; an
        exception in this connection's handling (hooks included) is logged
        and closes it with 1011, and never reaches other connections. When
        the client has gone away, or when cancelled (the server stops), it
        still leaves its rooms and runs `on_disconnect`, each bounded by
        CLOSE_TIMEOUT.
        """
        conn = Connection(
            room=room,
            user_id=user_id,
            batch=batch,
            send_queue_size=self._config.send_queue_size,
            heartbeat_deadline=self._config.heartbeat_deadline,
            flush_ticker=self._hub.flush_ticker,
            address=address,
            grant=grant,
        )
        joined = False
        try:
            await websocket.accept()
        except h11.ProtocolError as exc:
            # The server's HTTP layer broke before our 101 went out
            # (hypercorn#225); it closes the connection and logs the warning.
            log.info("handshake failed", extra=fields(client_id=conn.id, error=str(exc)))
            return
        self._metrics.connections_accepted.inc()
        if (direct := _direct_writer(websocket)) is not None:
            conn.use_direct(direct)
        try:
            await self._hub.join(conn, self._welcome(conn), since)
            joined = True
            await self._hooks.on_connect(conn)
            await self._serve(conn, websocket)
        except Exception:
            log.exception(
                "connection failed",
                extra=fields(client_id=conn.id, user_id=conn.user_id, room=conn.room),
            )
            conn.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._count_end(conn)
            self._hub.leave(conn)
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await self._end(websocket, conn, joined)

    def _count_end(self, conn: Connection) -> None:
        metrics = self._metrics
        metrics.room_subscriptions.observe(len(conn.rooms))
        code = None if conn.close_reason is None else conn.close_reason[0]
        metrics.count_close(code)
        if code == CloseCode.SLOW_CONSUMER:
            metrics.slow_consumer_disconnects.inc()
        elif code == CloseCode.HEARTBEAT_TIMEOUT:
            metrics.heartbeat_timeouts.inc()

    async def _end(self, websocket: WebSocket, conn: Connection, joined: bool) -> None:
        if conn.close_reason is not None:
            code, reason = conn.close_reason
            await websocket.close(code, reason)
        if not joined:
            return
        try:
            await self._hooks.on_disconnect(conn)
        except Exception:
            log.exception(
                "disconnect handling failed",
                extra=fields(client_id=conn.id, user_id=conn.user_id, room=conn.room),
            )

    def _welcome(self, conn: Connection) -> str:
        return encode(
            {
                "type": "welcome",
                "client_id": conn.id,
                "user_id": conn.user_id,
                "room": conn.room,
                "heartbeat_interval": self._config.heartbeat_interval,
                "protocol": PROTOCOL_VERSION,
            }
        )

    async def _serve(self, conn: Connection, websocket: WebSocket) -> None:
        """Run `conn` until it ends; with auth on, also watch its token's
        expiry (a refresh can set one). With auth off nothing expires, and
        no task is spent per connection on watching it. Cancellation ends
        both."""
        if self._verify_token is None:
            await conn.serve(websocket, self._limited_on_frame)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(
                    watch_expiry,
                    conn,
                    notice=self._config.token_expiry_notice,
                    leeway=self._config.auth_leeway_seconds,
                )
            )
            await conn.serve(websocket, self._limited_on_frame)
            nursery.cancel_scope.cancel()

    async def _on_frame(self, conn: Connection, data: str | bytes) -> None:
        if not isinstance(data, str):
            self._metrics.frame_errors.labels(ErrorCode.BINARY_NOT_SUPPORTED.value).inc()
            conn.enqueue(_BINARY_REFUSED)
            return
        try:
            frame = parse_client_frame(data, max_body_chars=self._config.max_body_chars)
            await self._handle_frame(conn, frame)
        except FrameError as exc:
            self._metrics.frame_errors.labels(exc.code.value).inc()
            conn.enqueue(error_frame(exc.code, exc.detail, exc.room))

    async def _handle_frame(self, conn: Connection, frame: ClientFrame) -> None:
        """Act on one valid frame; raises `FrameError` to refuse it."""
        if isinstance(frame, ChatRequest):
            await self._publish_chat(conn, frame)
        elif isinstance(frame, Subscribe):
            await self._subscribe(conn, frame)
        elif isinstance(frame, Unsubscribe):
            if not self._hub.unsubscribe(conn, frame.room, "requested"):
                raise FrameError(
                    ErrorCode.NOT_SUBSCRIBED, "not subscribed to this room", frame.room
                )
        elif isinstance(frame, Ping):
            conn.enqueue(frame.pong_frame)
        elif isinstance(frame, Refresh):
            self._refresh(conn, frame.token)
        # A Pong needs nothing more: receiving it already reset the heartbeat deadline.

    def _refresh(self, conn: Connection, token: str) -> None:
        """Take a newer token for `conn`: same `sub`; rooms it no longer
        covers are left."""
        if self._verify_token is None:
            raise FrameError(ErrorCode.INVALID_TOKEN, "authentication is off: nothing to refresh")
        try:
            grant = self._verify_token(token)
        except AuthError as exc:
            raise FrameError(ErrorCode.INVALID_TOKEN, str(exc)) from None
        if grant.user_id != conn.user_id:
            raise FrameError(ErrorCode.INVALID_TOKEN, "the token is for another sub")
        conn.regrant(grant)
        conn.enqueue(encode({"type": "refreshed", "exp": grant.exp}))
        for room in sorted(conn.rooms):
            if not grant.allows(room):
                self._hub.unsubscribe(conn, room, "forbidden")

    async def _subscribe(self, conn: Connection, request: Subscribe) -> None:
        _check_allowed(conn, request.room)
        if request.room in conn.rooms:
            raise FrameError(ErrorCode.INVALID_MESSAGE, "already subscribed", request.room)
        limit = self._config.max_rooms_per_connection
        if len(conn.rooms) >= limit:
            raise FrameError(
                ErrorCode.TOO_MANY_ROOMS, f"at most {limit} rooms per connection", request.room
            )
        await self._hub.subscribe(conn, request.room, request.since)

    async def _publish_chat(self, conn: Connection, request: ChatRequest) -> None:
        room = conn.room if request.room is None else request.room
        _check_allowed(conn, room)
        if room not in conn.rooms:
            raise FrameError(ErrorCode.NOT_SUBSCRIBED, "subscribe to the room first", room)
        # A retry is answered with the original, to this client alone; the
        # receive loop goes on meanwhile instead of waiting for Redis.
        await self.publish_chat(conn, room, request, on_duplicate=conn.enqueue)

    async def publish_chat(
        self,
        conn: Connection,
        room: str,
        request: ChatRequest,
        *,
        on_duplicate: OnDuplicate | None = None,
    ) -> PublishOutcome | None:
        """Say `request` in `room` as `conn`: through the `on_message` hook,
        then published with the room's next `seq` (a retry with the same
        user and `client_msg_id` is not published again; `on_duplicate`
        gets the original). The chat sockets and the publish API both come
        through here.

        Returns the publish's outcome, or None if the hook dropped the
        message.
        Waits only for the hook and while the outgoing queue is full; if
        cancelled, the message was queued whole or not at all.
        """
        self._metrics.messages_received.inc()
        message = await self._hooks.on_message(
            conn,
            Message(
                room,
                conn.id,
                conn.user_id,
                body=request.body,
                client_msg_id=request.client_msg_id,
                id=new_message_id(),
                ts=now_ms(),
            ),
        )
        if message is None:
            self._metrics.messages_dropped.labels("hook").inc()
            return None
        # Always the room it was sent to, whatever the hook did: rooms stay isolated.
        sender = None if message.client_msg_id is None else (conn.user_id, message.client_msg_id)
        return await self._broadcaster.publish_chat(
            room, message.encode(), sender=sender, on_duplicate=on_duplicate
        )


def _direct_writer(websocket: WebSocket) -> DirectWriter | None:
    """The accepted WebSocket's direct path, if the server offers one (ASGI scope extension)."""
    scope = getattr(websocket, "scope", None) or {}
    writer: DirectWriter | None = (scope.get("extensions") or {}).get(DIRECT_SEND)
    return writer


def _check_allowed(conn: Connection, room: str) -> None:
    if not conn.grant.allows(room):
        raise FrameError(ErrorCode.FORBIDDEN_ROOM, FORBIDDEN_ROOM_DETAIL, room)
