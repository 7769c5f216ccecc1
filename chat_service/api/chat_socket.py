"""The chat WebSocket endpoints, `WS_PATH` (the default room) and
`WS_PATH/<room>`: served by an ASGI layer of ours around the Quart app
(Quart's `asgi_app` seam), not by Quart's websocket machinery, whose
per-connection tasks, contexts and per-frame signals cost more than the
chat itself (see `chat_service.asgi_websocket`).

The endpoints stay rules of the app's URL map, without a view: the route
table the API documents are checked against, and what the layer matches a
`websocket` scope with, so a path is routed here exactly when Quart would
have routed it to them. Every other scope goes to the Quart app.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache, partial
from typing import Any, Final
from urllib.parse import parse_qsl, urlparse

from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter

from ..asgi_websocket import ASGIReceive, ASGISend, ASGIWebSocket, Scope
from ..realtime.capacity import AtCapacity
from ..realtime.grant import Grant
from ..realtime.message import DEFAULT_ROOM, Since, is_valid_name
from ..runtime import ChatRuntime
from .access import NAME_RULE, REFUSAL_CONTENT_TYPE, Refused, check_room, refusal_body, room_claims
from .handshake import WS_PATH
from .query import since_parameters

__all__ = ["ChatSockets", "register_chat_sockets"]

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

# The endpoints of the two rules; the default room's has no `room` in its path.
_DEFAULT_ROOM_ENDPOINT: Final = "chat_default_room"
_ROOM_ENDPOINT: Final = "chat_room"
_ENDPOINTS: Final = frozenset({_DEFAULT_ROOM_ENDPOINT, _ROOM_ENDPOINT})
# Paths whose room (or None: not a chat endpoint) is kept once matched.
ROOM_PATHS_CACHED: Final = 4096
# The upgrade request's headers the admission reads (ASGI names are lowercase).
_READ_HEADERS: Final = frozenset({b"origin", b"sec-websocket-key", b"authorization"})


def register_chat_sockets(app: QuartTrio) -> None:
    """Add the chat WebSocket rules to `app`'s URL map (served by
    `ChatSockets`, which `create_app` puts around the app)."""
    app.add_websocket(WS_PATH, _DEFAULT_ROOM_ENDPOINT)
    app.add_websocket(f"{WS_PATH}/<room>", _ROOM_ENDPOINT)


def _is_valid_websocket_key(key: str) -> bool:
    """RFC 6455 4.1: the key is 16 random bytes, base64-encoded."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _headers(scope: Scope) -> dict[str, str]:
    """The first value of each header the admission reads, by lowercase name."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _READ_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _args(scope: Scope) -> dict[str, str]:
    """The query parameters, the first value of each, decoded as Quart
    (werkzeug) decodes them."""
    args: dict[str, str] = {}
    pairs = parse_qsl(
        scope["query_string"].decode(), keep_blank_values=True, errors="werkzeug.url_quote"
    )
    for name, value in pairs:
        args.setdefault(name, value)
    return args


class ChatSockets:
    """ASGI middleware: `websocket` scopes routed to the chat endpoints
    (`routes`, the app's URL map) are served from `runtime`, all else by `app`."""

    def __init__(self, app: ASGIApp, routes: MapAdapter, runtime: ChatRuntime) -> None:
        self.app = app
        self._routes = routes
        self._runtime = runtime
        self._allowed_origins = runtime.config.allowed_origins
        self._verifier = runtime.verifier
        # Werkzeug's matcher leaves a reference cycle per call (a recursive
        # closure) for the garbage collector; a room's path is matched once.
        self._room_of_path = lru_cache(maxsize=ROOM_PATHS_CACHED)(self._match_room)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve the scope: a chat WebSocket here, anything else in the app.
        The client gone, or cancellation (the server stopping), ends the
        connection as `Handler.handle` describes."""
        room = self._room(scope) if scope["type"] == "websocket" else None
        if room is None:
            await self.app(scope, receive, send)
        else:
            await self._serve(scope, room, receive, send)

    def _room(self, scope: Scope) -> str | None:
        """The room of a chat endpoint's path, or None for any other path."""
        path: str = scope["path"]
        if not path.startswith("/"):  # an absolute-form request target
            path = urlparse(path).path
        root = scope.get("root_path", "")
        if root:
            if not path.startswith(root):
                return None
            path = path[len(root) :]
        return self._room_of_path(path)

    def _match_room(self, path: str) -> str | None:
        try:
            endpoint, view_args = self._routes.match(path, "GET", websocket=True)
        except HTTPException:  # not found, a redirect...: Quart answers it as it always has
            return None
        if endpoint not in _ENDPOINTS:
            return None
        room: str = view_args.get("room", DEFAULT_ROOM)
        return room

    async def _serve(self, scope: Scope, room: str, receive: ASGIReceive, send: ASGISend) -> None:
        runtime = self._runtime
        websocket = ASGIWebSocket(scope, receive, send)
        args = _args(scope)
        try:
            grant, since = self._admit(_headers(scope), args, room)
        except Refused as exc:
            await self._refuse(websocket, exc)
            return
        if runtime.draining:
            await self._refuse(
                websocket,
                Refused(503, "shutting_down", "this instance is shutting down; reconnect"),
            )
            return
        client = scope.get("client")
        address = client[0] if client else "<local>"  # as Quart's `remote_addr`
        user_id = grant.user_id
        try:
            runtime.capacity.acquire(user_id, address)
        except AtCapacity as exc:
            await self._refuse(websocket, Refused(exc.status, exc.error, exc.detail))
            return
        try:
            await websocket.serve(
                partial(
                    runtime.handler.handle,
                    room=room,
                    user_id=user_id,
                    batch=args.get("batch") == "1",
                    since=since,
                    address=address,
                    grant=grant,
                )
            )
        finally:
            runtime.capacity.release(user_id, address)

    def _admit(
        self, headers: Mapping[str, str], args: Mapping[str, str], room: str
    ) -> tuple[Grant, Since | None]:
        """Who the upgrade request is and where it recovers `room` from.

        Raises `Refused` (an answer before the upgrade) when it may not open.
        """
        origin = headers.get("origin")
        allowed = self._allowed_origins
        if allowed and origin is not None and origin.lower() not in allowed:
            raise Refused(403, "forbidden_origin", "this Origin may not open a chat WebSocket")
        check_room(room)
        if not _is_valid_websocket_key(headers.get("sec-websocket-key", "")):
            raise Refused(400, "invalid_handshake", "Sec-WebSocket-Key is not 16 bytes in base64")
        since = since_parameters(args)
        if self._verifier is not None:
            return room_claims(self._verifier, headers.get("authorization", ""), args, room), since
        grant = Grant(args.get("user_id", "anonymous"))
        if not is_valid_name(grant.user_id):
            raise Refused(400, "invalid_user_id", f"a user_id is {NAME_RULE}")
        return grant, since

    async def _refuse(self, websocket: ASGIWebSocket, refused: Refused) -> None:
        """Answer the upgrade with `refused`'s JSON refusal, counted by its error."""
        self._runtime.metrics.connections_refused.labels(refused.error).inc()
        body = refusal_body(refused.error, refused.detail)
        headers = [
            (b"content-type", REFUSAL_CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in refused.headers.items()),
        ]
        await websocket.refuse(refused.status, headers, body)
