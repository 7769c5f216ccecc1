"""The HTTP and WebSocket routes."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from quart import Response, jsonify, websocket
from quart_trio import QuartTrio

from ..realtime.capacity import AtCapacity
from ..realtime.grant import FORBIDDEN_ROOM_DETAIL, Grant
from ..realtime.message import DEFAULT_ROOM, is_valid_name
from ..runtime import ChatRuntime
from ..web import register_page
from .auth import AuthError, bearer_token
from .docs import register_docs
from .handshake import WS_PATH
from .publish import register_publish_route
from .query import BadParameter, since_parameters

__all__ = ["WS_PATH", "register_routes"]

_NAME_RULE = "1 to 64 characters of A-Z a-z 0-9 . _ -"


def _refusal(status: int, error: str, detail: str, **headers: str) -> Response:
    response = jsonify({"error": error, "detail": detail})
    response.status_code = status
    response.headers.update(headers)
    return response


def _is_valid_websocket_key(key: str) -> bool:
    """RFC 6455 4.1: the key is 16 random bytes, base64-encoded."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def register_routes(app: QuartTrio, runtime: ChatRuntime) -> None:
    """Mount the chat page, health, readiness, API documents and chat WebSocket routes on `app`."""
    register_page(app)
    register_publish_route(app, runtime)
    register_docs(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """The process is alive and serving HTTP; how many trio tasks it runs."""
        return {"status": "ok", "tasks": runtime.tasks.live}

    @app.get("/readyz")
    async def readyz() -> Response:
        """200 once every long-lived task runs and fan-out works; else 503 with the reason."""
        reason = runtime.unready_reason()
        if reason is None:
            return jsonify({"status": "ready", "connections": runtime.hub.connection_count()})
        response = jsonify({"status": "not_ready", "reason": reason})
        response.status_code = 503
        return response

    allowed_origins = runtime.config.allowed_origins
    verifier = runtime.verifier

    async def chat(room: str) -> Response | None:
        origin = websocket.headers.get("Origin")
        if allowed_origins and origin is not None and origin.lower() not in allowed_origins:
            return _refusal(403, "forbidden_origin", "this Origin may not open a chat WebSocket")
        if not is_valid_name(room):
            return _refusal(400, "invalid_room", f"a room name is {_NAME_RULE}")
        if not _is_valid_websocket_key(websocket.headers.get("Sec-WebSocket-Key", "")):
            return _refusal(400, "invalid_handshake", "Sec-WebSocket-Key is not 16 bytes in base64")
        try:
            since = since_parameters(websocket.args)
        except BadParameter as exc:
            return _refusal(400, exc.error, exc.detail)
        if verifier is not None:
            try:
                claims = verifier.verify(
                    bearer_token(
                        websocket.headers.get("Authorization", ""), websocket.args.get("token", "")
                    )
                )
            except AuthError as exc:
                return _refusal(401, "unauthorized", str(exc), **{"WWW-Authenticate": "Bearer"})
            if not claims.allows(room):
                return _refusal(403, "forbidden_room", FORBIDDEN_ROOM_DETAIL)
            grant: Grant = claims
        else:
            grant = Grant(websocket.args.get("user_id", "anonymous"))
            if not is_valid_name(grant.user_id):
                return _refusal(400, "invalid_user_id", f"a user_id is {_NAME_RULE}")
        user_id = grant.user_id
        if runtime.draining:
            return _refusal(503, "shutting_down", "this instance is shutting down; reconnect")
        address = websocket.remote_addr or ""
        try:
            runtime.capacity.acquire(user_id, address)
        except AtCapacity as exc:
            return _refusal(exc.status, exc.error, exc.detail)
        try:
            await runtime.handler.handle(
                websocket._get_current_object(),  # type: ignore[attr-defined]
                room=room,
                user_id=user_id,
                batch=websocket.args.get("batch") == "1",
                since=since,
                address=address,
                grant=grant,
            )
        finally:
            runtime.capacity.release(user_id, address)
        return None

    @app.websocket(WS_PATH)
    async def chat_default_room() -> Response | None:
        """The default room, `lobby`."""
        return await chat(DEFAULT_ROOM)

    @app.websocket(f"{WS_PATH}/<room>")
    async def chat_room(room: str) -> Response | None:
        """The room named in the path."""
        return await chat(room)
