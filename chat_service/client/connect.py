"""The terminal client's connection loop: one socket at a time, reconnected
with capped, jittered exponential backoff, the session's frames over it."""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from ..realtime.backoff import Backoff
from .session import RateLimited, Session

__all__ = ["RECONNECT_CODES", "ClientOptions", "Refused", "run_client"]

# Close codes after which trying again can work: the server went away
# (1001, 1012), the network dropped (1006), a server-side fault or overload
# (1011, 1013, 1014), or this client fell behind (4000, 4001).
RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014, 4000, 4001})
# HTTP refusals before the upgrade that pass by themselves (too many
# connections, shutting down, at capacity, a proxy without upstream).
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Silence beyond the heartbeat interval after which the server is taken for
# gone (a network that dropped without TCP noticing yet) and the socket redone.
_HEARTBEAT_SLACK = 10.0
_CONNECT_TIMEOUT = 10.0
# A close handshake the server does not answer must not hold up an exit.
_DISCONNECT_TIMEOUT = 2.0


class Refused(Exception):
    """The server refused this client in a way retrying will not fix."""


class _Silent(Exception):
    """Nothing came from the server for longer than its heartbeat promises."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How to reach the server, and how patiently."""

    url: str
    user_id: str | None = None
    reconnect_min: float = 0.5
    reconnect_max: float = 15.0
    rate_limit_pause: float = 1.0


def _url_with(url: str, query: dict[str, str]) -> str:
    parts = urlsplit(url)
    merged = {k: v for k, v in parse_qsl(parts.query) if k not in ("since", "epoch")}
    merged.update(query)
    return urlunsplit(parts._replace(query=urlencode(merged)))


def _frames(message: str | bytes) -> list[dict[str, Any]]:
    text = message if isinstance(message, str) else message.decode()
    # A batched frame (batch=1) holds several messages, one per line.
    return [json.loads(line) for line in text.split("\n") if line]


class _Runner:
    def __init__(self, options: ClientOptions, session: Session) -> None:
        self.options = options
        self.session = session
        self.reporter = session.reporter
        self.backoff = Backoff(options.reconnect_min, options.reconnect_max)
        self.ws: WebSocketConnection | None = None
        self.eof = False
        self.finished = False
        self.retry_at = float("inf")
        self._wait = trio.CancelScope()

    def finish_if_done(self) -> None:
        if self.eof and self.session.idle and not self.finished:
            self.finished = True
            self._wait.cancel()

    async def send(self, ws: WebSocketConnection | None, frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            if ws is not None:
                await ws.send_message(json.dumps(frame, ensure_ascii=False))

    async def read_lines(self, lines: trio.MemoryReceiveChannel[str]) -> None:
        async for line in lines:
            # A socket closing under us: the line stays in flight and goes
            # out again on the next connection.
            with suppress(ConnectionClosed):
                await self.send(self.ws, self.session.say(line))
        self.eof = True
        self.finish_if_done()

    async def serve(self, ws: WebSocketConnection) -> None:
        """Handle frames until finished; raises what ends the socket otherwise."""
        heard = trio.current_time()
        while not self.finished:
            interval = self.session.heartbeat_interval
            silent_at = float("inf") if interval is None else heard + interval + _HEARTBEAT_SLACK
            with trio.CancelScope(deadline=min(silent_at, self.retry_at)) as self._wait:
                message = await ws.get_message()
                heard = trio.current_time()
                for frame in _frames(message):
                    try:
                        answer = self.session.handle(frame)
                    except RateLimited:
                        self.retry_at = trio.current_time() + self.options.rate_limit_pause
                        answer = []
                    await self.send(ws, answer)
                    self.finish_if_done()
            if trio.current_time() >= self.retry_at:
                self.retry_at = float("inf")
                await self.send(ws, self.session.retry_in_flight())
            elif trio.current_time() >= silent_at:
                raise _Silent

    async def connect_once(self) -> None:
        query = {} if self.options.user_id is None else {"user_id": self.options.user_id}
        url = _url_with(self.options.url, {**query, **self.session.query()})
        token = self.session.token
        headers = [] if token is None else [(b"Authorization", f"Bearer {token}".encode())]
        async with open_websocket_url(
            url,
            extra_headers=headers,
            connect_timeout=_CONNECT_TIMEOUT,
            disconnect_timeout=_DISCONNECT_TIMEOUT,
        ) as ws:
            self.session.connection_opened()
            self.ws = ws
            try:
                await self.serve(ws)
            finally:
                self.ws = None

    async def run(self) -> None:
        while not self.finished:
            try:
                await self.connect_once()
            except ConnectionClosed as exc:
                code = 1006 if exc.reason is None else exc.reason.code
                if code not in RECONNECT_CODES:
                    reason = "" if exc.reason is None else exc.reason.reason or ""
                    raise Refused(f"closed by the server: {code} {reason}".strip()) from None
                self.reporter.notice(f"disconnected ({code}); reconnecting")
            except _Silent:
                self.reporter.notice("the server went silent; reconnecting")
            except ConnectionRejected as exc:
                body = (exc.body or b"").decode(errors="replace")
                if exc.status_code not in _RETRY_STATUSES:
                    raise Refused(f"refused: HTTP {exc.status_code} {body}".strip()) from None
                self.reporter.notice(f"refused for now (HTTP {exc.status_code}); retrying")
            except HandshakeError as exc:
                cause = exc.__cause__ or exc
                self.reporter.notice(f"cannot connect ({cause}); retrying")
            if self.session.welcomed:
                self.session.welcomed = False
                self.backoff.reset()
            if not self.finished:
                with trio.CancelScope() as self._wait:
                    await self.backoff.wait()


async def run_client(
    options: ClientOptions, session: Session, lines: trio.MemoryReceiveChannel[str]
) -> None:
    """Chat until `lines` has ended and every line from it has come back.

    Prints what `session` reports; reconnects after the close codes in
    RECONNECT_CODES, a dropped network or a temporary HTTP refusal, each time
    after a capped, jittered, doubling delay, and recovers every room with
    `since`. The socket is closed with 1000 at the end. Raises `Refused` when
    the server turns the client away for good. Cancellation closes the
    socket at once (no close handshake) and leaves undelivered lines unsent.
    """
    runner = _Runner(options, session)
    refusal: Refused | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.read_lines, lines)
        try:
            await runner.run()
        except Refused as exc:
            refusal = exc  # raised below, not wrapped in the nursery's group
        nursery.cancel_scope.cancel()
    if refusal is not None:
        raise refusal
