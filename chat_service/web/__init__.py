"""The chat page: plain HTML, CSS and JavaScript shipped in this package and
served at `/`, speaking the public protocol like any other client."""

from .page import PAGE_ASSETS, PAGE_ASSETS_PATH, PAGE_PATH, register_page

__all__ = ["PAGE_ASSETS", "PAGE_ASSETS_PATH", "PAGE_PATH", "register_page"]
