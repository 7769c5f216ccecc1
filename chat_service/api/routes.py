"""The HTTP and WebSocket routes."""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify
from quart_trio import QuartTrio

from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..runtime import ChatRuntime
from ..web import register_page
from .chat_socket import register_chat_sockets
from .docs import register_docs
from .handshake import METRICS_PATH, WS_PATH
from .messages_routes import register_room_messages_routes
from .presence_routes import register_presence_routes
from .rooms_routes import register_rooms_routes

__all__ = ["WS_PATH", "register_routes"]


def register_routes(app: QuartTrio, runtime: ChatRuntime) -> None:
    """Mount the chat page, health, readiness, metrics, API documents, room
    history and chat WebSocket routes on `app` (the chat WebSockets are
    served by `ChatSockets`, around the app)."""
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

    register_room_messages_routes(app, runtime)
    register_presence_routes(app, runtime)
    register_rooms_routes(app, runtime)
    register_chat_sockets(app)
