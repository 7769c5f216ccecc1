"""The optional second listener (METRICS_PORT) that serves GET /metrics
alone, so Prometheus can scrape a port the clients' load balancer never
exposes."""

from __future__ import annotations

from typing import Any

from .api.handshake import METRICS_PATH
from .metrics import CONTENT_TYPE, Metrics

__all__ = ["metrics_app"]

Scope = dict[str, Any]
Receive = Any
Send = Any


def metrics_app(metrics: Metrics) -> Any:
    """A bare ASGI app: GET /metrics answers `metrics.render()`, every
    other path 404 and every other method 405; lifespan events are
    acknowledged. It never waits on anything but its own I/O."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                await send({"type": event["type"] + ".complete"})
                if event["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return  # a WebSocket upgrade: refused by the server (no accept)
        if scope["path"] != METRICS_PATH:
            status, body, media = 404, b"not found\n", "text/plain; charset=utf-8"
        elif scope["method"] not in ("GET", "HEAD"):
            status, body, media = 405, b"method not allowed\n", "text/plain; charset=utf-8"
        else:
            status, body, media = 200, metrics.render(), CONTENT_TYPE
        headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})

    return app
