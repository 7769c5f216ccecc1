"""The HTTP and WebSocket routes."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from quart import Response, jsonify, websocket
from quart_trio import QuartTrio

from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..realtime.capacity import AtCapacity
from ..realtime.grant import Grant
from ..realtime.message import DEFAULT_ROOM, Since, is_valid_name
from ..runtime import ChatRuntime
from ..web import register_page
from .access import NAME_RULE, Refused, check_room, refusal, room_claims
from .docs import register_docs
from .handshake import METRICS_PATH, WS_PATH
from .messages_routes import register_room_messages_routes
from .presence_routes import register_presence_routes
from .query import since_parameters
from .rooms_routes import register_rooms_routes

__all__ = ["WS_PATH", "register_routes"]


def _is_valid_websocket_key(key: str) -> bool:
    """RFC 6455 4.1: the key is 16 random bytes, base64-encoded."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def register_routes(app: QuartTrio, runtime: ChatRuntime) -> None:
    """Mount the chat page, health, readiness, metrics, API documents, room
    history and chat WebSocket routes on `app`."""
    register_page(app)
    register_docs(app)
    metrics = runtime.metrics

    @app.get(METRICS_PATH)
    async def metrics_text() -> Response:
        """Every metric of this instance, in Prometheus' text format."""
        return Response(metrics.render(), content_type=METRICS_CONTENT_TYPE)

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
    register_room_messages_routes(app, runtime)
    register_presence_routes(app, runtime)
    register_rooms_routes(app, runtime)

    def admit(room: str) -> tuple[Grant, Since | None]:
        """Who the upgrade request is and where it recovers `room` from.

        Raises `Refused` (an answer before the upgrade) when it may not open.
        """
        origin = websocket.headers.get("Origin")
        if allowed_origins and origin is not None and origin.lower() not in allowed_origins:
            raise Refused(403, "forbidden_origin", "this Origin may not open a chat WebSocket")
        check_room(room)
        if not _is_valid_websocket_key(websocket.headers.get("Sec-WebSocket-Key", "")):
            raise Refused(400, "invalid_handshake", "Sec-WebSocket-Key is not 16 bytes in base64")
        since = since_parameters(websocket.args)
        if verifier is not None:
            return room_claims(
                verifier, websocket.headers.get("Authorization", ""), websocket.args, room
            ), since
        grant = Grant(websocket.args.get("user_id", "anonymous"))
        if not is_valid_name(grant.user_id):
            raise Refused(400, "invalid_user_id", f"a user_id is {NAME_RULE}")
        return grant, since

    def refuse(status: int, error: str, detail: str, **headers: str) -> Response:
        """The refusal of an upgrade, counted by its `error`."""
        metrics.connections_refused.labels(error).inc()
        return refusal(status, error, detail, **headers)

    async def chat(room: str) -> Response | None:
        try:
            grant, since = admit(room)
        except Refused as exc:
            return refuse(exc.status, exc.error, exc.detail, **exc.headers)
        user_id = grant.user_id
        if runtime.draining:
            return refuse(503, "shutting_down", "this instance is shutting down; reconnect")
        address = websocket.remote_addr or ""
        try:
            runtime.capacity.acquire(user_id, address)
        except AtCapacity as exc:
            return refuse(exc.status, exc.error, exc.detail)
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
