"""The Quart-Trio app that serves HTTP and WebSocket requests from a
running `ChatRuntime`."""

from __future__ import annotations

from quart_trio import QuartTrio

from .forwarded import ForwardedFor, TrustedProxies
from .runtime import ChatRuntime

__all__ = ["create_app"]


def create_app(runtime: ChatRuntime) -> QuartTrio:
    """The Quart-Trio app with every route, serving from `runtime`; the
    client's address is the one a trusted proxy forwards (FORWARDED_ALLOW_IPS)."""
    from .api.routes import register_routes

    app = QuartTrio(__name__, static_folder=None)  # no /static route: the service has no files
    # A request body is bounded as a WebSocket message is.
    app.config["MAX_CONTENT_LENGTH"] = runtime.config.max_message_bytes
    register_routes(app, runtime)
    if runtime.config.forwarded_allow_ips:
        trusted = TrustedProxies(runtime.config.forwarded_allow_ips)
        app.asgi_app = ForwardedFor(app.asgi_app, trusted)  # type: ignore[method-assign]
    return app
