"""One ASGI WebSocket connection, driven straight from its `receive` and
`send` callables: what the chat handler needs of a WebSocket, without a
framework in between.

Quart's websocket machinery costs each connection two more tasks (one
moving every inbound event from `receive` to a channel, one running the
route), a `Headers` object, request and app context copies, and per frame
a blinker signal each way. Here the task that reads a frame is the one
that handles it, and a client that goes away cancels whoever serves it
(`receive` tells whoever reads, which ends the connection), without a
task of its own to watch for it.
Sending is the server's ASGI send; the connection writes straight to the
socket itself where it can (`Connection.use_direct`, with the server's
direct-send extension, `chat_service.direct_send`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

__all__ = ["ASGIReceive", "ASGISend", "ASGIWebSocket", "Scope"]

Scope = Mapping[str, Any]
ASGIReceive = Callable[[], Awaitable[Mapping[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

# The ASGI extension that lets an app answer an upgrade request over HTTP.
_HTTP_RESPONSE = "websocket.http.response"
# What closes a WebSocket whose server has nothing more to say (RFC 6455 7.4.1).
_NORMAL_CLOSURE = 1000


class ASGIWebSocket:
    """The WebSocket of one ASGI `websocket` scope.

    `scope` is the ASGI scope as the server gave it (the handler finds the
    direct-send extension in its `extensions` once accepted).
    """

    __slots__ = ("_accepted", "_closed", "_gone", "_receive", "_send", "scope")

    def __init__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._accepted = False
        self._closed = False
        self._gone = False  # a `receive` saw the client go away

    async def serve(self, handle: Callable[[ASGIWebSocket], Awaitable[None]]) -> None:
        """Run `handle(self)` until it returns. Then a WebSocket it accepted
        and did not close, whose client is still there, is closed with 1000
        (as Quart closes it). Cancellation propagates."""
        await handle(self)
        if self._accepted and not self._closed and not self._gone:
            await self.close(_NORMAL_CLOSURE)

    async def accept(self) -> None:
        """Complete the upgrade (101). Cancellation: as the server's send."""
        self._accepted = True
        await self._send({"type": "websocket.accept", "subprotocol": None, "headers": []})

    async def refuse(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Answer the upgrade request with HTTP `status` instead (before
        `accept`); a server without the ASGI HTTP-response extension answers
        403 whatever `status` is. Cancellation: as the server's send."""
        if _HTTP_RESPONSE not in (self.scope.get("extensions") or {}):
            await self.close(_NORMAL_CLOSURE)
            return
        self._closed = True
        await self._send(
            {"type": "websocket.http.response.start", "status": status, "headers": headers}
        )
        await self._send({"type": "websocket.http.response.body", "body": body})

    async def send(self, data: str) -> None:
        """Send one text message as the server sends (waiting for the
        socket). Cancellation: as the server's send (a frame is never cut
        in half)."""
        await self._send({"type": "websocket.send", "text": data})

    async def receive(self) -> str | bytes:
        """The next message: text, or bytes for a binary one.

        Raises `trio.ClosedResourceError` once the client has gone away.
        Cancellation: as the server's receive (nothing is lost).
        """
        while True:
            try:
                event = await self._receive()
            except trio.EndOfChannel:  # the server takes no more from the app
                break
            kind = event["type"]
            if kind == "websocket.receive":
                text: str | None = event.get("text")
                return text if text is not None else event.get("bytes") or b""
            if kind == "websocket.disconnect":
                break
            # `websocket.connect`, first of all: the handler accepts without it.
        self._gone = True
        raise trio.ClosedResourceError("the client has gone away")

    async def close(self, code: int, reason: str = "") -> None:
        """Close the WebSocket with `code` and `reason` (the first close
        only). Cancellation: as the server's send."""
        if self._closed:
            return
        self._closed = True
        await self._send({"type": "websocket.close", "code": code, "reason": reason})
