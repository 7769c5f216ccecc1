"""Serve the chat page and its assets from the package's `static/` files."""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from quart import Response, abort
from quart_trio import QuartTrio

__all__ = ["PAGE_ASSETS", "PAGE_ASSETS_PATH", "PAGE_PATH", "register_page"]

PAGE_PATH: Final = "/"
PAGE_ASSETS_PATH: Final = "/assets"
# The files the page loads, and their media types; any other name is a 404.
PAGE_ASSETS: Final = {"chat.js": "text/javascript", "chat.css": "text/css"}

_STATIC: Final = files(__package__).joinpath("static")

# Defence in depth behind rendering every body as text: the page runs only
# its own script, loads nothing from elsewhere, and cannot be framed.
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A deploy must reach open pages' next load: revalidate every time.
    "Cache-Control": "no-cache",
}


def _static(name: str, mimetype: str) -> Response:
    response = Response(_STATIC.joinpath(name).read_bytes(), mimetype=mimetype)
    response.headers.update(_HEADERS)
    return response


def register_page(app: QuartTrio) -> None:
    """Mount the chat page at PAGE_PATH and its assets under PAGE_ASSETS_PATH."""

    @app.get(PAGE_PATH)
    async def chat_page() -> Response:
        """The chat page."""
        return _static("index.html", "text/html")

    @app.get(f"{PAGE_ASSETS_PATH}/<asset>")
    async def chat_page_asset(asset: str) -> Response:
        """A file the chat page loads; 404 for any other name."""
        if asset not in PAGE_ASSETS:
            abort(404)
        return _static(asset, PAGE_ASSETS[asset])
