"""The Quart-Trio app that serves HTTP and WebSocket requests from a
running `ChatRuntime`."""

from __future__ import annotations

from quart_trio import QuartTrio

from .forwarded import ForwardedFor, TrustedProxies
from .runtime import ChatRuntime

__all__ = ["create_app"]


def create_app(runtime: ChatRuntime) -> QuartTrio:
    """The Quart-Trio app with every route, serving from `runtime`: the chat
    WebSockets by `ChatSockets` around Quart, everything else by Quart; the
    client's address is the one a trusted proxy forwards (FORWARDED_ALLOW_IPS)."""
    from .api.chat_socket import ChatSockets
    from .api.routes import register_routes

    app = QuartTrio(__name__, static_folder=None)  # no /static route: the service has no files
    # A request body is bounded as a WebSocket message is.
    app.config["MAX_CONTENT_LENGTH"] = runtime.config.max_message_bytes
    register_routes(app, runtime)
    routes = app.url_map.bind("")  # no host or subdomain rules: any host matches alike
    app.asgi_app = ChatSockets(app.asgi_app, routes, runtime)  # type: ignore[method-assign]
    if runtime.config.forwarded_allow_ips:
        trusted = TrustedProxies(runtime.config.forwarded_allow_ips)
        app.asgi_app = ForwardedFor(app.asgi_app, trusted)  # type: ignore[method-assign]
    return app
